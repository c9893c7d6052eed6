package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// tinyTokenizer returns a small tokenizer.json in the Phi-3 layout, changed
// by edit (which may be nil).
func tinyTokenizer(t testing.TB, edit func(map[string]any)) []byte {
	t.Helper()
	vocab := map[string]any{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := range 256 {
		vocab[fmt.Sprintf("<0x%02X>", b)] = 3 + b
	}
	for i, s := range []string{"▁", "a", "b", "c", "▁a", "ab", "▁ab", "abc", "▁▁"} {
		vocab[s] = 259 + i
	}
	file := map[string]any{
		"version":    "1.0",
		"truncation": nil,
		"padding":    nil,
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "<unk>", "special": true, "normalized": false},
			map[string]any{"id": 1, "content": "<s>", "special": true, "normalized": false},
			map[string]any{"id": 2, "content": "</s>", "special": false, "normalized": false, "rstrip": true},
			map[string]any{"id": 268, "content": "<eot>", "special": true, "normalized": false, "lstrip": true},
		},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}},
		"pre_tokenizer": nil,
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
			"vocab": vocab, "merges": []any{"▁ a", "a b", "▁a b", [2]string{"ab", "c"}, "▁ ▁"},
		},
		"post_processor": map[string]any{
			"type": "TemplateProcessing",
			"single": []any{
				map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
			},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}}},
		},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
	}
	if edit != nil {
		edit(file)
	}
	data, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func modelOf(f map[string]any) map[string]any { return f["model"].(map[string]any) }

func TestTinyTokenizer(t *testing.T) {
	tok, err := Load(tinyTokenizer(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		text string
		want []int32
	}{
		{"ab", []int32{1, 265}},                          // ▁ab
		{"abc", []int32{1, 265, 262}},                    // "▁ a" outranks "a b", so "ab c" never applies
		{"ab ab", []int32{1, 265, 265}},                  // spaces become ▁
		{"ba", []int32{1, 259, 261, 260}},                // no merge applies
		{"d", []int32{1, 259, 3 + 'd'}},                  // byte fallback
		{"a </s>  b", []int32{1, 263, 259, 2, 259, 261}}, // </s> strips the spaces after it; "b" gets its own ▁
		{"a  <eot>b", []int32{1, 263, 268, 259, 261}},    // lstrip takes the spaces before <eot>
	} {
		if got := tok.Encode(tc.text, true); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

func TestMetaspace(t *testing.T) {
	data := tinyTokenizer(t, func(f map[string]any) {
		f["normalizer"] = nil
		f["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}
		f["decoder"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}
	})
	tok, err := Load(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		text string
		want []int32
	}{
		{"ab ab", []int32{265, 265}},
		{"ab  a", []int32{265, 259, 263}}, // split before every ▁: "▁ab", "▁", "▁a"
		{"a</s>ab", []int32{263, 2, 265}},
		{"▁a", []int32{263}}, // already starts with ▁: nothing prepended
	} {
		if got := tok.Encode(tc.text, false); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
	for _, tc := range []struct {
		ids  []int32
		want string
	}{
		{[]int32{265, 265}, "ab ab"},
		{[]int32{267, 263}, " a"}, // the first token loses every ▁
		{[]int32{1, 265}, "<s> ab"},
	} {
		if got := tok.Decode(tc.ids, false); got != tc.want {
			t.Errorf("Decode(%v) = %q, want %q", tc.ids, got, tc.want)
		}
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 500 {
		ids := make([]int32, rng.IntN(12))
		for i := range ids {
			ids[i] = int32(rng.IntN(270))
		}
		checkStream(t, tok, ids, rng.IntN(2) == 0)
	}

	first := tinyTokenizer(t, func(f map[string]any) {
		f["normalizer"] = nil
		f["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}
	})
	if tok, err = Load(first, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Encode("a<s>a", false), []int32{263, 1, 260}; !slices.Equal(got, want) {
		t.Errorf("prepend_scheme first: Encode = %v, want %v", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(map[string]any)
		wantErr error
		mention string
	}{
		{"WordPiece model", func(f map[string]any) { modelOf(f)["type"] = "WordPiece" }, ErrUnsupported, "WordPiece"},
		{"Unigram model", func(f map[string]any) { f["model"] = map[string]any{"type": "Unigram", "vocab": []any{}} }, ErrUnsupported, "Unigram"},
		{"ByteLevel pre-tokenizer", func(f map[string]any) {
			f["pre_tokenizer"] = map[string]any{"type": "ByteLevel", "add_prefix_space": false}
		}, ErrUnsupported, "ByteLevel"},
		{"Split pre-tokenizer in a sequence", func(f map[string]any) {
			f["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
				map[string]any{"type": "Split"}, map[string]any{"type": "ByteLevel"}}}
		}, ErrUnsupported, "pre_tokenizer"},
		{"ByteLevel decoder", func(f map[string]any) { f["decoder"] = map[string]any{"type": "ByteLevel"} }, ErrUnsupported, "ByteLevel"},
		{"null decoder", func(f map[string]any) { f["decoder"] = nil }, ErrUnsupported, "decoder"},
		{"NFKC normalizer", func(f map[string]any) { f["normalizer"] = map[string]any{"type": "NFKC"} }, ErrUnsupported, "NFKC"},
		{"regex Replace", func(f map[string]any) {
			f["normalizer"] = map[string]any{"type": "Replace", "pattern": map[string]any{"Regex": " +"}, "content": "▁"}
		}, ErrUnsupported, "Regex"},
		{"Roberta post-processor", func(f map[string]any) { f["post_processor"] = map[string]any{"type": "RobertaProcessing"} }, ErrUnsupported, "RobertaProcessing"},
		{"dropout", func(f map[string]any) { modelOf(f)["dropout"] = 0.1 }, ErrUnsupported, "dropout"},
		{"Replace after Fuse", func(f map[string]any) {
			f["decoder"] = map[string]any{"type": "Sequence", "decoders": []any{
				map[string]any{"type": "Fuse"}, map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "}}}
		}, ErrUnsupported, "Replace after Fuse"},
		{"merge of unknown tokens", func(f map[string]any) { modelOf(f)["merges"] = []any{"x y"} }, ErrInvalid, "merge 0"},
		{"merge with three parts", func(f map[string]any) { modelOf(f)["merges"] = []any{"a b c"} }, ErrInvalid, "merge 0"},
		{"negative id", func(f map[string]any) { modelOf(f)["vocab"].(map[string]any)["z"] = -3 }, ErrInvalid, "-3"},
		{"huge id", func(f map[string]any) { modelOf(f)["vocab"].(map[string]any)["z"] = 1 << 40 }, ErrInvalid, "out of range"},
		{"unknown unk", func(f map[string]any) { modelOf(f)["unk_token"] = "<nope>" }, ErrInvalid, "<nope>"},
		{"template with an unknown token", func(f map[string]any) {
			f["post_processor"].(map[string]any)["special_tokens"] = map[string]any{}
		}, ErrInvalid, "<s>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tinyTokenizer(t, tc.edit), nil)
			if !errors.Is(err, tc.wantErr) || !strings.Contains(fmt.Sprint(err), tc.mention) {
				t.Errorf("Load = %v, want %v mentioning %q", err, tc.wantErr, tc.mention)
			}
		})
	}
	if _, err := Load([]byte("{"), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load(truncated JSON) = %v, want ErrInvalid", err)
	}
	if _, err := Load(tinyTokenizer(t, nil), []byte("[")); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load(bad config) = %v, want ErrInvalid", err)
	}
}
