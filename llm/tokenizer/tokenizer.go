package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Errors produced by Load.
var (
	// ErrUnsupported: tokenizer.json uses a component (model, normalizer,
	// pre-tokenizer, post-processor or decoder) or an option this package
	// does not implement. The wrapping error names it.
	ErrUnsupported = errors.New("tokenizer: unsupported component")
	// ErrInvalid: the files are not valid JSON or are inconsistent (for
	// example a merge that names a token missing from the vocabulary).
	ErrInvalid = errors.New("tokenizer: invalid tokenizer file")
)

// Tokenizer encodes text to token ids and back. It is immutable after Load
// and safe for concurrent use.
type Tokenizer struct {
	// tokens maps an id to its token string; present says which ids exist.
	tokens  []string
	present []bool
	vocab   map[string]int32 // model vocabulary
	added   map[string]int32 // added tokens, which take precedence in TokenID
	special []bool           // by id: skipped by Decode(skipSpecial)

	addedRaw  addedTokenMatcher // added tokens matched on the raw text
	addedNorm addedTokenMatcher // added tokens matched on normalized text

	normalizers []normalizer
	preTok      *metaspace // nil: the whole segment is one word
	model       bpeModel
	post        []template // applied in order when addSpecial
	decoder     decoderPipeline

	config Config
	bos    int32 // -1 when unknown
	eos    int32 // -1 when unknown
}

// Config holds the fields of tokenizer_config.json that a server needs.
// Tokens are given in their string form.
type Config struct {
	// ChatTemplate is the Jinja chat template; when the file has a list of
	// named templates it is the one named "default".
	ChatTemplate string
	// ChatTemplates holds every named template (a single unnamed template is
	// stored under "default").
	ChatTemplates map[string]string
	BOSToken      string
	EOSToken      string
	PadToken      string
	UnkToken      string
	// AdditionalSpecialTokens lists additional_special_tokens.
	AdditionalSpecialTokens []string
	// AddBOS and AddEOS are add_bos_token and add_eos_token (false when
	// absent). Encode follows the post-processor of tokenizer.json, which
	// the exporters build from these flags.
	AddBOS bool
	AddEOS bool
}

// LoadDir reads tokenizer.json and, when present, tokenizer_config.json from
// dir.
func LoadDir(dir string) (*Tokenizer, error) {
	tj, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	cj, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	if errors.Is(err, os.ErrNotExist) {
		cj = nil
	} else if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return Load(tj, cj)
}

// Load builds a Tokenizer from the contents of tokenizer.json and
// tokenizer_config.json (nil when there is none).
func Load(tokenizerJSON, tokenizerConfigJSON []byte) (*Tokenizer, error) {
	var file tokenizerFile
	if err := json.Unmarshal(tokenizerJSON, &file); err != nil {
		return nil, fmt.Errorf("%w: tokenizer.json: %v", ErrInvalid, err)
	}
	cfg, err := parseConfig(tokenizerConfigJSON)
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{config: cfg, bos: -1, eos: -1}
	if err := t.buildModel(file.Model); err != nil {
		return nil, err
	}
	if err := t.buildAddedTokens(file.AddedTokens); err != nil {
		return nil, err
	}
	if t.normalizers, err = parseNormalizer(file.Normalizer); err != nil {
		return nil, err
	}
	if t.preTok, err = parsePreTokenizer(file.PreTokenizer); err != nil {
		return nil, err
	}
	if t.post, err = t.parsePostProcessor(file.PostProcessor); err != nil {
		return nil, err
	}
	if t.decoder, err = parseDecoder(file.Decoder); err != nil {
		return nil, err
	}
	t.buildAddedMatchers(file.AddedTokens)
	t.resolveConfigTokens()
	return t, nil
}

// tokenizerFile is the top level of tokenizer.json. truncation and padding
// are ignored: Encode never truncates or pads.
type tokenizerFile struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	Model         json.RawMessage  `json:"model"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
}

type addedTokenJSON struct {
	ID         int64  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
	Special    bool   `json:"special"`
}

// maxVocabID bounds ids so that a hostile file cannot make Load allocate
// id-indexed tables of arbitrary size.
const maxVocabID = 1 << 21

func checkID(id int64, what string) (int32, error) {
	if id < 0 || id >= maxVocabID || id > math.MaxInt32 {
		return 0, fmt.Errorf("%w: %s id %d out of range", ErrInvalid, what, id)
	}
	return int32(id), nil
}

// setToken records id ↔ text in the id-indexed tables.
func (t *Tokenizer) setToken(id int32, text string) {
	for int(id) >= len(t.tokens) {
		t.tokens = append(t.tokens, "")
		t.present = append(t.present, false)
	}
	t.tokens[id] = text
	t.present[id] = true
}

func (t *Tokenizer) buildAddedTokens(list []addedTokenJSON) error {
	t.added = make(map[string]int32, len(list))
	for _, a := range list {
		id, err := checkID(a.ID, "added token")
		if err != nil {
			return err
		}
		if a.Content == "" {
			return fmt.Errorf("%w: added token %d is empty", ErrInvalid, id)
		}
		t.added[a.Content] = id
		t.setToken(id, a.Content)
	}
	t.special = make([]bool, len(t.tokens))
	for _, a := range list {
		if a.Special {
			t.special[a.ID] = true
		}
	}
	return nil
}

// buildAddedMatchers splits the added tokens into those matched on the raw
// text and those matched after normalization (normalized defaults to
// !special, as in the reference).
func (t *Tokenizer) buildAddedMatchers(list []addedTokenJSON) {
	var raw, norm []matchToken
	for _, a := range list {
		m := matchToken{content: a.Content, id: int32(a.ID), lstrip: a.LStrip, rstrip: a.RStrip, singleWord: a.SingleWord}
		normalized := !a.Special
		if a.Normalized != nil {
			normalized = *a.Normalized
		}
		// Like the reference, normalized tokens are matched in a second
		// pass over each normalized segment even without normalizers.
		if normalized {
			m.content = normalize(t.normalizers, a.Content)
			if m.content == "" {
				continue
			}
			norm = append(norm, m)
		} else {
			raw = append(raw, m)
		}
	}
	t.addedRaw = newAddedTokenMatcher(raw)
	t.addedNorm = newAddedTokenMatcher(norm)
}

// resolveConfigTokens finds bos/eos ids and marks the tokens that
// tokenizer_config.json names as special, as the Python tokenizers do when
// they register them.
func (t *Tokenizer) resolveConfigTokens() {
	if id, ok := t.TokenID(t.config.BOSToken); ok && t.config.BOSToken != "" {
		t.bos = id
	} else if len(t.post) > 0 && len(t.post[0].prefix) > 0 {
		t.bos = t.post[0].prefix[0]
	}
	if id, ok := t.TokenID(t.config.EOSToken); ok && t.config.EOSToken != "" {
		t.eos = id
	}
	named := append([]string{t.config.BOSToken, t.config.EOSToken, t.config.UnkToken, t.config.PadToken}, t.config.AdditionalSpecialTokens...)
	for _, s := range named {
		if s == "" {
			continue
		}
		if id, ok := t.TokenID(s); ok {
			for int(id) >= len(t.special) {
				t.special = append(t.special, false)
			}
			t.special[id] = true
		}
	}
}

// parseConfig reads tokenizer_config.json; nil or empty input gives the zero
// Config.
func parseConfig(data []byte) (Config, error) {
	var cfg Config
	if len(strings.TrimSpace(string(data))) == 0 {
		return cfg, nil
	}
	var raw struct {
		ChatTemplate            json.RawMessage   `json:"chat_template"`
		BOSToken                json.RawMessage   `json:"bos_token"`
		EOSToken                json.RawMessage   `json:"eos_token"`
		PadToken                json.RawMessage   `json:"pad_token"`
		UnkToken                json.RawMessage   `json:"unk_token"`
		AdditionalSpecialTokens []json.RawMessage `json:"additional_special_tokens"`
		AddBOS                  *bool             `json:"add_bos_token"`
		AddEOS                  *bool             `json:"add_eos_token"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return cfg, fmt.Errorf("%w: tokenizer_config.json: %v", ErrInvalid, err)
	}
	var err error
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *string
	}{
		{"bos_token", raw.BOSToken, &cfg.BOSToken},
		{"eos_token", raw.EOSToken, &cfg.EOSToken},
		{"pad_token", raw.PadToken, &cfg.PadToken},
		{"unk_token", raw.UnkToken, &cfg.UnkToken},
	} {
		if *f.dst, err = configToken(f.raw); err != nil {
			return cfg, fmt.Errorf("%w: tokenizer_config.json %s: %v", ErrInvalid, f.name, err)
		}
	}
	for _, r := range raw.AdditionalSpecialTokens {
		s, err := configToken(r)
		if err != nil {
			return cfg, fmt.Errorf("%w: tokenizer_config.json additional_special_tokens: %v", ErrInvalid, err)
		}
		if s != "" {
			cfg.AdditionalSpecialTokens = append(cfg.AdditionalSpecialTokens, s)
		}
	}
	if raw.AddBOS != nil {
		cfg.AddBOS = *raw.AddBOS
	}
	if raw.AddEOS != nil {
		cfg.AddEOS = *raw.AddEOS
	}
	if cfg.ChatTemplate, cfg.ChatTemplates, err = chatTemplates(raw.ChatTemplate); err != nil {
		return cfg, fmt.Errorf("%w: tokenizer_config.json chat_template: %v", ErrInvalid, err)
	}
	return cfg, nil
}

// configToken accepts a token as a string, as {"content": ...} or as null.
func configToken(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", errors.New("want a string or an object with content")
	}
	return obj.Content, nil
}

// chatTemplates accepts a template string or a list of {name, template}.
func chatTemplates(raw json.RawMessage) (string, map[string]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, map[string]string{"default": s}, nil
	}
	var list []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return "", nil, errors.New("want a string or a list of {name, template}")
	}
	all := make(map[string]string, len(list))
	for _, e := range list {
		all[e.Name] = e.Template
	}
	return all["default"], all, nil
}

// TokenID returns the id of a token string (an added token or a vocabulary
// entry, not text to be encoded).
func (t *Tokenizer) TokenID(token string) (int32, bool) {
	if id, ok := t.added[token]; ok {
		return id, true
	}
	id, ok := t.vocab[token]
	return id, ok
}

// VocabSize is the largest id (model vocabulary or added token) plus one.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// BOS is the beginning-of-sequence id: tokenizer_config's bos_token, else the
// first token the post-processor puts before the text.
func (t *Tokenizer) BOS() (int32, bool) { return t.bos, t.bos >= 0 }

// EOS is tokenizer_config's eos_token id.
func (t *Tokenizer) EOS() (int32, bool) { return t.eos, t.eos >= 0 }

// IsSpecial reports whether Decode with skipSpecial drops id: added tokens
// marked special, and the tokens tokenizer_config.json names (bos, eos, unk,
// pad, additional_special_tokens).
func (t *Tokenizer) IsSpecial(id int32) bool {
	return id >= 0 && int(id) < len(t.special) && t.special[id]
}

// Config returns the parsed tokenizer_config.json. The ChatTemplates map is
// a copy.
func (t *Tokenizer) Config() Config {
	c := t.config
	if c.ChatTemplates != nil {
		c.ChatTemplates = make(map[string]string, len(t.config.ChatTemplates))
		for k, v := range t.config.ChatTemplates {
			c.ChatTemplates[k] = v
		}
	}
	c.AdditionalSpecialTokens = append([]string(nil), t.config.AdditionalSpecialTokens...)
	return c
}
