package tokenizer

import (
	"github.com/modelserver/modelserver/internal/phi3assets"
	"strings"
	"testing"
)

// prompt4k returns a chat-formatted prompt of at least 4096 tokens.
func prompt4k(tb testing.TB, tok *Tokenizer) string {
	tb.Helper()
	const turn = "<|user|>\nExplain how a transformer decoder generates text, token by token, " +
		"including the KV cache, sampling (temperature 0.7, top-p 0.9) and stop strings. " +
		"Code: `for i := range n { x[i] += 1 }` — 你好，世界 🦙 naïve café.<|end|>\n" +
		"<|assistant|>\nEach step feeds the last token; the cache keeps keys and values of earlier ones.<|end|>\n"
	var b strings.Builder
	for len(tok.Encode(b.String(), true)) < 4096 {
		b.WriteString(turn)
	}
	return b.String()
}

func BenchmarkEncode4k(b *testing.B) {
	tok := loadPhi3(b)
	prompt := prompt4k(b, tok)
	b.SetBytes(int64(len(prompt)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Encode(prompt, true)
	}
}

// BenchmarkEncode4kOneSegment encodes 4k tokens without added tokens, so BPE
// runs over a single 16 KB word.
func BenchmarkEncode4kOneSegment(b *testing.B) {
	tok := loadPhi3(b)
	prompt := strings.NewReplacer("<|user|>", "", "<|end|>", "", "<|assistant|>", "").Replace(prompt4k(b, tok))
	b.SetBytes(int64(len(prompt)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Encode(prompt, true)
	}
}

func BenchmarkDecode4k(b *testing.B) {
	tok := loadPhi3(b)
	ids := tok.Encode(prompt4k(b, tok), true)
	b.ReportAllocs()
	for b.Loop() {
		tok.Decode(ids, true)
	}
}

func BenchmarkStreamDecode4k(b *testing.B) {
	tok := loadPhi3(b)
	ids := tok.Encode(prompt4k(b, tok), true)
	b.ReportAllocs()
	for b.Loop() {
		d := tok.NewStreamDecoder(true)
		for _, id := range ids {
			d.Add(id)
		}
		d.Flush()
	}
}

func BenchmarkLoad(b *testing.B) {
	tj, cj := phi3assets.TokenizerJSON, phi3assets.TokenizerConfigJSON
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(tj, cj); err != nil {
			b.Fatal(err)
		}
	}
}
