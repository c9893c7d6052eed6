package tokenizer

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzEncode checks that Encode never panics and that, for valid UTF-8
// without added-token strings, decoding gives the text back. The one change
// is that "▁" reads back as a space: the normalizer maps spaces to "▁", and
// the leading "▁" it prepends is exactly what the decoder strips.
func FuzzEncode(f *testing.F) {
	tok := loadPhi3(f)
	for _, s := range goldenTexts {
		f.Add(s)
	}
	f.Add("\xff\xfe<|end|>\xe2\x82")
	f.Fuzz(func(t *testing.T, text string) {
		ids := tok.Encode(text, true)
		if len(ids) == 0 || ids[0] != 1 {
			t.Fatalf("Encode(%q, true) = %v, want a leading <s>", text, ids)
		}
		plain := tok.Encode(text, false)
		checkStream(t, tok, plain, false)
		if !utf8.ValidString(text) {
			return
		}
		for content := range tok.added {
			if strings.Contains(text, content) {
				return
			}
		}
		want := strings.ReplaceAll(text, "▁", " ")
		if got := tok.Decode(plain, false); got != want {
			t.Fatalf("Decode(Encode(%q)) = %q, want %q (ids %v)", text, got, want, plain)
		}
		if got := tok.Decode(ids, true); got != want {
			t.Fatalf("Decode(Encode(%q, true), skip) = %q, want %q", text, got, want)
		}
	})
}

// FuzzLoad checks that Load never panics, fails only with its sentinel
// errors, and that a loaded tokenizer survives use.
func FuzzLoad(f *testing.F) {
	f.Add(tinyTokenizer(f, nil))
	f.Add(tinyTokenizer(f, func(m map[string]any) {
		m["normalizer"] = nil
		m["pre_tokenizer"] = map[string]any{"type": "Metaspace", "prepend_scheme": "first"}
		m["decoder"] = map[string]any{"type": "Metaspace", "add_prefix_space": true}
	}))
	f.Add(tinyTokenizer(f, func(m map[string]any) { modelOf(m)["merges"] = []any{[2]string{"a", "b"}, "▁ a"} }))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"decoder":{"type":"Fuse"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Load(data, nil)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Load error %v wraps neither ErrInvalid nor ErrUnsupported", err)
			}
			return
		}
		ids := tok.Encode("ab c</s>  d<s>\xff é", true)
		for _, skip := range []bool{false, true} {
			checkStream(t, tok, append(ids, 1, -1, 1<<30), skip)
		}
		for id := range int32(tok.VocabSize()) + 1 {
			_ = tok.TokenText(id)
		}
	})
}
