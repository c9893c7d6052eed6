package tokenizer

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelserver/modelserver/internal/phi3assets"
)

var update = flag.Bool("update", false, "rewrite testdata/phi3_golden.json from the current encoder")

// phi3 loads the embedded Phi-3 tokenizer once per test binary.
var phi3 = sync.OnceValues(func() (*Tokenizer, error) {
	return Load(phi3assets.TokenizerJSON, phi3assets.TokenizerConfigJSON)
})

func loadPhi3(tb testing.TB) *Tokenizer {
	tb.Helper()
	tok, err := phi3()
	if err != nil {
		tb.Fatalf("Load(phi3) = %v", err)
	}
	return tok
}

// The reference ids from testdata SOURCE.md (Hugging Face tokenizers).
const referenceText = "<|system|>\nSystem message<|end|>\n<|user|>\nHello, how are you?<|end|>\n<|assistant|>\nSure, 3 things! 🦙 héllo<|end|>\n"

var referenceIDs = []int32{1, 32006, 29871, 13, 3924, 2643, 32007, 29871, 13, 32010, 29871, 13, 10994, 29892, 920, 526, 366, 29973, 32007, 29871, 13,
	32001, 18585, 29892, 29871, 29941, 2712, 29991, 29871, 243, 162, 169, 156, 298, 3610, 417, 32007, 29871, 13}

func TestReferenceIDs(t *testing.T) {
	tok := loadPhi3(t)
	got := tok.Encode(referenceText, true)
	if diff := cmp.Diff(referenceIDs, got); diff != "" {
		t.Fatalf("Encode(reference) mismatch (-want +got):\n%s", diff)
	}
	// Every segment after a special token got its own "▁" (a space), and
	// the rstrip of <|assistant|> swallowed the "\n" after it.
	const wantText = "<s><|system|> \nSystem message<|end|> \n<|user|> \nHello, how are you?<|end|> \n" +
		"<|assistant|> Sure, 3 things! 🦙 héllo<|end|> \n"
	if got := tok.Decode(got, false); got != wantText {
		t.Errorf("Decode(reference, false) = %q, want %q", got, wantText)
	}
	const wantSkip = "\nSystem message \n \nHello, how are you? \n Sure, 3 things! 🦙 héllo \n"
	if got := tok.Decode(got, true); got != wantSkip {
		t.Errorf("Decode(reference, true) = %q, want %q", got, wantSkip)
	}
}

// golden is one case of testdata/phi3_golden.json.
type golden struct {
	Text string  `json:"text"`
	IDs  []int32 `json:"ids"`
}

// goldenTexts are the texts of the golden file; -update recomputes their ids.
var goldenTexts = []string{
	"", " ", "  ", "\n", "Hello", " Hello", "Hello ", "Hello  world", "3.14159", "2024-01-02",
	"<s>", "</s>", "</s>   x", "<|user|>", " <|user|> ", "<|user|>\n\nHi<|end|>", "<|assistant|>  \t\nok",
	"<|unknown|>", "<|user", "<<|end|>>", "<0x41>", "▁", "a▁b", "\uFFFD", "🦙", "👨‍👩‍👧‍👦", "🇯🇵🇺🇸",
	"你好，世界", "𠜎𠜱", "e\u0301", "مرحبا", "नमस्ते", "\x00\x01\x1b[0m", "\t\tcode()", "func f() {\n\treturn 1\n}",
	referenceText,
}

func TestGolden(t *testing.T) {
	tok := loadPhi3(t)
	path := filepath.Join("testdata", "phi3_golden.json")
	if *update {
		// One case per line keeps diffs of the golden file readable.
		lines := make([]string, 0, len(goldenTexts))
		for _, s := range goldenTexts {
			var line strings.Builder
			enc := json.NewEncoder(&line)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(golden{Text: s, IDs: tok.Encode(s, true)}); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, " "+strings.TrimSuffix(line.String(), "\n"))
		}
		data := "[\n" + strings.Join(lines, ",\n") + "\n]\n"
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cases []golden
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) != len(goldenTexts) {
		t.Fatalf("golden file has %d cases, want %d; run with -update", len(cases), len(goldenTexts))
	}
	for _, c := range cases {
		if got := tok.Encode(c.Text, true); !slices.Equal(got, c.IDs) {
			t.Errorf("Encode(%q) = %v, want %v", c.Text, got, c.IDs)
		}
	}
	if !slices.Equal(cases[len(cases)-1].IDs, referenceIDs) {
		t.Errorf("golden file disagrees with the reference ids")
	}
}

func TestEncodeTable(t *testing.T) {
	tok := loadPhi3(t)
	for _, tc := range []struct {
		text       string
		addSpecial bool
		want       []int32
	}{
		{"", true, []int32{1}},
		{"", false, []int32{}},
		{"3", false, []int32{29871, 29941}}, // digits are not merged
		{"\n", false, []int32{29871, 13}},   // byte fallback for "\n"
		{"<|end|>\n", false, []int32{32007, 29871, 13}},
		{"<|assistant|>\n  Sure", false, []int32{32001, 18585}}, // rstrip eats "\n  "
		{"a<|end|>", false, []int32{263, 32007}},
		{"<|end|><|end|>", false, []int32{32007, 32007}},
		{"<|endoftext|>", true, []int32{1, 32000}},
		{"\x00", false, []int32{29871, 3}},
		{"\xff", false, []int32{29871, 258}}, // invalid UTF-8 becomes its byte
	} {
		if got := tok.Encode(tc.text, tc.addSpecial); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q, %v) = %v, want %v", tc.text, tc.addSpecial, got, tc.want)
		}
	}
}

func TestDecodeTable(t *testing.T) {
	tok := loadPhi3(t)
	for _, tc := range []struct {
		ids         []int32
		skipSpecial bool
		want        string
	}{
		{nil, false, ""},
		{[]int32{1, 15043}, false, "<s> Hello"},
		{[]int32{1, 15043}, true, "Hello"},
		{[]int32{29871, 29871, 15043}, false, "  Hello"},
		{[]int32{243, 162, 169, 156}, false, "🦙"},
		{[]int32{243, 162, 169}, false, "\uFFFD\uFFFD\uFFFD"},  // an incomplete run: one U+FFFD per byte
		{[]int32{68, 229, 15043}, false, "\uFFFD\uFFFD Hello"}, // "A" then a stray 0xE2: the whole run is invalid
		{[]int32{229, 32007, 133, 175}, true, "€"},             // skipped specials do not split a byte run
		{[]int32{15043, 40000, -1, 2}, false, "Hello</s>"},     // unknown ids are dropped; </s> is not special
		{[]int32{15043, 2, 32000}, true, "Hello</s>"},
		{[]int32{32010, 32006, 32007, 32001}, true, ""},
	} {
		if got := tok.Decode(tc.ids, tc.skipSpecial); got != tc.want {
			t.Errorf("Decode(%v, %v) = %q, want %q", tc.ids, tc.skipSpecial, got, tc.want)
		}
	}
}

func TestAccessors(t *testing.T) {
	tok := loadPhi3(t)
	if got := tok.VocabSize(); got != 32045 {
		t.Errorf("VocabSize = %d, want 32045", got)
	}
	if id, ok := tok.BOS(); id != 1 || !ok {
		t.Errorf("BOS = %d, %v", id, ok)
	}
	if id, ok := tok.EOS(); id != 32000 || !ok {
		t.Errorf("EOS = %d, %v", id, ok)
	}
	for tokStr, want := range map[string]int32{"<|end|>": 32007, "<|user|>": 32010, "▁": 29871, "<0x0A>": 13, "<unk>": 0, "</s>": 2} {
		if id, ok := tok.TokenID(tokStr); id != want || !ok {
			t.Errorf("TokenID(%q) = %d, %v, want %d", tokStr, id, ok, want)
		}
	}
	if _, ok := tok.TokenID("no such token"); ok {
		t.Errorf("TokenID(no such token) found")
	}
	for id, want := range map[int32]bool{0: true, 1: true, 2: false, 13: false, 32000: true, 32007: true, 32044: true, 32045: false, -1: false} {
		if got := tok.IsSpecial(id); got != want {
			t.Errorf("IsSpecial(%d) = %v, want %v", id, got, want)
		}
	}
	for id, want := range map[int32]string{15043: " Hello", 10994: "Hello", 29871: " ", 13: "\n", 243: "\uFFFD", 32007: "<|end|>", 40000: ""} {
		if got := tok.TokenText(id); got != want {
			t.Errorf("TokenText(%d) = %q, want %q", id, got, want)
		}
	}
	cfg := tok.Config()
	if cfg.BOSToken != "<s>" || cfg.EOSToken != "<|endoftext|>" || cfg.PadToken != "<|endoftext|>" || cfg.UnkToken != "<unk>" || !cfg.AddBOS || cfg.AddEOS {
		t.Errorf("Config = %+v", cfg)
	}
	if !strings.HasPrefix(cfg.ChatTemplate, "{% for message in messages %}") || cfg.ChatTemplates["default"] != cfg.ChatTemplate {
		t.Errorf("ChatTemplate = %q", cfg.ChatTemplate)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		want Config
	}{
		{"nil", "", Config{}},
		{"object tokens", `{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null, "add_bos_token": true}`,
			Config{BOSToken: "<s>", EOSToken: "</s>", AddBOS: true}},
		{"named templates", `{"chat_template": [{"name": "default", "template": "A"}, {"name": "tool_use", "template": "B"}]}`,
			Config{ChatTemplate: "A", ChatTemplates: map[string]string{"default": "A", "tool_use": "B"}}},
		{"additional", `{"additional_special_tokens": ["<x>", {"content": "<y>"}], "add_eos_token": true}`,
			Config{AdditionalSpecialTokens: []string{"<x>", "<y>"}, AddEOS: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseConfig mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := parseConfig([]byte(`{"bos_token": 3}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("parseConfig(bos_token 3) = %v, want ErrInvalid", err)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), phi3assets.TokenizerJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("LoadDir without config: %v", err)
	}
	if _, ok := tok.EOS(); ok {
		t.Errorf("EOS known without tokenizer_config.json")
	}
	if id, ok := tok.BOS(); id != 1 || !ok {
		t.Errorf("BOS from the post-processor = %d, %v, want 1", id, ok)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), phi3assets.TokenizerConfigJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	if tok, err = LoadDir(dir); err != nil {
		t.Fatal(err)
	}
	if id, ok := tok.EOS(); id != 32000 || !ok {
		t.Errorf("EOS = %d, %v", id, ok)
	}
	if _, err := LoadDir(t.TempDir()); err == nil {
		t.Errorf("LoadDir(empty dir) succeeded")
	}
}

func TestConcurrentEncode(t *testing.T) {
	tok := loadPhi3(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if got := tok.Encode(referenceText, true); !slices.Equal(got, referenceIDs) {
					t.Errorf("concurrent Encode = %v", got)
					return
				}
			}
		})
	}
	wg.Wait()
}
