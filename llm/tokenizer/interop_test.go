package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelserver/modelserver/internal/phi3assets"
)

// nodeReference runs testdata/node/reference.mjs (the @huggingface/tokenizers
// package) over texts. It skips when node or the package is missing, unless
// MODELSERVER_REQUIRE_INTEROP=1 makes that a
// failure.
func nodeReference(t *testing.T, tokenizerJSON, configJSON []byte, texts []string) []referenceResult {
	t.Helper()
	missing := ""
	node, err := exec.LookPath("node")
	if err != nil {
		missing = "node is not installed"
	} else if _, err := os.Stat(filepath.Join("testdata", "node", "node_modules", "@huggingface", "tokenizers")); err != nil {
		missing = "@huggingface/tokenizers is not installed (npm ci --prefix llm/tokenizer/testdata/node)"
	}
	if missing != "" {
		if os.Getenv("MODELSERVER_REQUIRE_INTEROP") == "1" {
			t.Fatal(missing)
		}
		t.Skip(missing + "; set MODELSERVER_REQUIRE_INTEROP=1 to make this a failure")
	}
	dir := t.TempDir()
	textsJSON, err := json.Marshal(texts)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"tokenizer.json": tokenizerJSON, "tokenizer_config.json": configJSON, "texts.json": textsJSON}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(node, filepath.Join("testdata", "node", "reference.mjs"),
		filepath.Join(dir, "tokenizer.json"), filepath.Join(dir, "tokenizer_config.json"), filepath.Join(dir, "texts.json"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node reference.mjs: %v\n%s", err, stderr.String())
	}
	var results []referenceResult
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
		t.Fatalf("node output: %v", err)
	}
	if len(results) != len(texts) {
		t.Fatalf("node returned %d results for %d texts", len(results), len(texts))
	}
	return results
}

type referenceResult struct {
	IDs         []int32 `json:"ids"`
	Plain       []int32 `json:"plain"`
	Decoded     string  `json:"decoded"`
	DecodedSkip string  `json:"decoded_skip"`
}

// TestInteropPhi3 compares Encode and Decode with @huggingface/tokenizers on
// random texts.
func TestInteropPhi3(t *testing.T) {
	// The golden texts ride along, so the golden file is checked too.
	texts := append(slices.Clone(goldenTexts), randomTexts(rand.New(rand.NewPCG(1, 2)), 1500)...)
	tok := loadPhi3(t)
	compareWithReference(t, tok, texts, nodeReference(t, phi3assets.TokenizerJSON, phi3assets.TokenizerConfigJSON, texts))
}

// TestInteropMetaspace does the same for the newer export of the same
// vocabulary: no normalizer, a Metaspace pre-tokenizer that prepends "▁" to
// the first segment only.
func TestInteropMetaspace(t *testing.T) {
	var file map[string]json.RawMessage
	if err := json.Unmarshal(phi3assets.TokenizerJSON, &file); err != nil {
		t.Fatal(err)
	}
	file["normalizer"] = json.RawMessage(`null`)
	file["pre_tokenizer"] = json.RawMessage(`{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}`)
	variant, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Load(variant, phi3assets.TokenizerConfigJSON)
	if err != nil {
		t.Fatal(err)
	}
	texts := randomTexts(rand.New(rand.NewPCG(3, 4)), 500)
	compareWithReference(t, tok, texts, nodeReference(t, variant, phi3assets.TokenizerConfigJSON, texts))
}

func compareWithReference(t *testing.T, tok *Tokenizer, texts []string, want []referenceResult) {
	t.Helper()
	failures := 0
	for i, text := range texts {
		w := want[i]
		ids := tok.Encode(text, true)
		var problems []string
		if !slices.Equal(ids, w.IDs) {
			problems = append(problems, fmt.Sprintf("Encode(true):\n  got  %v\n  want %v", ids, w.IDs))
		}
		if got := tok.Encode(text, false); !slices.Equal(got, w.Plain) {
			problems = append(problems, fmt.Sprintf("Encode(false):\n  got  %v\n  want %v", got, w.Plain))
		}
		if got := tok.Decode(w.IDs, false); got != w.Decoded {
			problems = append(problems, fmt.Sprintf("Decode(false):\n  got  %q\n  want %q", got, w.Decoded))
		}
		if got := tok.Decode(w.IDs, true); got != w.DecodedSkip {
			problems = append(problems, fmt.Sprintf("Decode(true):\n  got  %q\n  want %q", got, w.DecodedSkip))
		}
		for _, skip := range []bool{false, true} {
			checkStream(t, tok, w.IDs, skip)
		}
		if len(problems) == 0 {
			continue
		}
		failures++
		if failures <= 5 {
			t.Errorf("text %d %q:\n%s", i, text, strings.Join(problems, "\n"))
		}
	}
	if failures > 0 {
		t.Errorf("%d of %d texts differ from @huggingface/tokenizers", failures, len(texts))
	}
}

// textPieces are the building blocks of randomTexts. U+0085 and U+FEFF are
// left out: the reference strips whitespace around rstrip/lstrip tokens
// with Unicode White_Space (U+0085 yes, U+FEFF no), the JavaScript port with
// String.trim (the other way round).
var textPieces = [][]string{
	// words, digits, code
	{"Hello", "world", "the", "quick brown fox", "Tokenization", "don't", "I'm", "naïve", "café", "ÅngstrÖm",
		"3", "42", "3.14159", "1,000,000", "2024-06-30", "0x1F", "v1.2.3",
		"func main() {", "return x[i] + 1;", "if (a <= b && c != d)", "#include <stdio.h>", "</div>", "<a href=\"x\">", "{{ x }}", "a_b-c", "==>", "//", "/* */"},
	// whitespace runs
	{" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", " \t ", "\u00a0", "\u3000", "\u2028", "\u200b", "\v", "\f"},
	// emoji, ZWJ sequences, flags, modifiers
	{"🦙", "😀", "👍", "👍🏽", "👨‍👩‍👧‍👦", "👩‍💻", "🏳️‍🌈", "🇺🇸", "🇯🇵", "🇩🇪🇫🇷", "❤️", "✨", "🤖🤖"},
	// CJK and other scripts
	{"你好", "世界", "日本語のテキスト", "한국어", "𠜎𠜱𠝹", "中文，標點。", "مرحبا بالعالم", "العربية", "नमस्ते दुनिया", "हिन्दी", "Ελληνικά", "русский текст", "עברית", "ไทย"},
	// combining marks and rare characters needing byte fallback
	{"e\u0301", "a\u0308\u0323", "Z\u0351\u0362\u0327", "ꙮ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\U0010FFFD", "\uE000", "\uFFFD", "▁", "▁▁x", "<0x41>", "<0xZZ>", "\u2581\u2581", "ǅ", "ﬁ"},
	// control characters
	{"\x00", "\x01", "\x1b[31m", "\x7f", "\x08", "\u0080", "\u009f"},
	// special tokens and near misses
	{"<|user|>", "<|end|>", "<|assistant|>", "<|system|>", "<s>", "</s>", "<|endoftext|>", "<unk>", "<|placeholder1|>",
		"<|user", "<|", "|>", "<|unknown|>", "<<|end|>>", "<s><s>", "</s></s>"},
}

// randomTexts builds n texts from textPieces with random separators and
// leading/trailing whitespace; a fixed seed keeps them reproducible.
func randomTexts(rng *rand.Rand, n int) []string {
	seps := []string{"", "", " ", "  ", "\n", "\t", " \n"}
	texts := []string{"", " ", "  ", "\n", " \n ", "<|user|>", " <|user|> ", "<|assistant|>\n\nHi", "</s>  x", "x  </s>"}
	for len(texts) < n {
		var b strings.Builder
		if rng.IntN(4) == 0 {
			b.WriteString(seps[2+rng.IntN(len(seps)-2)])
		}
		for k := 1 + rng.IntN(12); k > 0; k-- {
			group := textPieces[rng.IntN(len(textPieces))]
			b.WriteString(group[rng.IntN(len(group))])
			b.WriteString(seps[rng.IntN(len(seps))])
		}
		if rng.IntN(4) == 0 {
			b.WriteString(seps[2+rng.IntN(len(seps)-2)])
		}
		texts = append(texts, b.String())
	}
	return texts
}
