package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// isNull reports whether a component is absent or JSON null.
func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

// componentType reads the "type" field of a component.
func componentType(raw json.RawMessage, kind string) (string, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrInvalid, kind, err)
	}
	return head.Type, nil
}

func unsupported(kind, what string) error {
	return fmt.Errorf("%w: %s %s", ErrUnsupported, kind, what)
}

// stringPattern reads a Replace pattern; only {"String": ...} is supported,
// since regex syntax differs between engines.
func stringPattern(raw json.RawMessage, kind string) (string, error) {
	var p struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", fmt.Errorf("%w: %s Replace pattern: %v", ErrInvalid, kind, err)
	}
	if p.String == nil {
		return "", unsupported(kind, "Replace with a Regex pattern")
	}
	if *p.String == "" {
		return "", fmt.Errorf("%w: %s Replace with an empty pattern", ErrInvalid, kind)
	}
	return *p.String, nil
}

// normalizer is one step of the normalizer sequence.
type normalizer struct {
	kind                  string // "Prepend", "Replace" or "Strip"
	text, content         string // Prepend: text; Replace: text → content
	stripLeft, stripRight bool
}

func parseNormalizer(raw json.RawMessage) ([]normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, err := componentType(raw, "normalizer")
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var seq struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := json.Unmarshal(raw, &seq); err != nil {
			return nil, fmt.Errorf("%w: normalizer: %v", ErrInvalid, err)
		}
		var out []normalizer
		for _, n := range seq.Normalizers {
			steps, err := parseNormalizer(n)
			if err != nil {
				return nil, err
			}
			out = append(out, steps...)
		}
		return out, nil
	case "Prepend":
		var p struct {
			Prepend string `json:"prepend"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("%w: normalizer Prepend: %v", ErrInvalid, err)
		}
		return []normalizer{{kind: typ, text: p.Prepend}}, nil
	case "Replace":
		var r struct {
			Pattern json.RawMessage `json:"pattern"`
			Content string          `json:"content"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("%w: normalizer Replace: %v", ErrInvalid, err)
		}
		pat, err := stringPattern(r.Pattern, "normalizer")
		if err != nil {
			return nil, err
		}
		return []normalizer{{kind: typ, text: pat, content: r.Content}}, nil
	case "Strip":
		var s struct {
			Left  bool `json:"strip_left"`
			Right bool `json:"strip_right"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("%w: normalizer Strip: %v", ErrInvalid, err)
		}
		return []normalizer{{kind: typ, stripLeft: s.Left, stripRight: s.Right}}, nil
	default:
		return nil, unsupported("normalizer", typ)
	}
}

// normalize applies the normalizer steps to one segment of text.
func normalize(steps []normalizer, s string) string {
	for _, n := range steps {
		switch n.kind {
		case "Prepend":
			// The reference leaves an empty segment empty.
			if s != "" {
				s = n.text + s
			}
		case "Replace":
			s = strings.ReplaceAll(s, n.text, n.content)
		case "Strip":
			if n.stripLeft {
				s = strings.TrimLeftFunc(s, unicode.IsSpace)
			}
			if n.stripRight {
				s = strings.TrimRightFunc(s, unicode.IsSpace)
			}
		}
	}
	return s
}

// metaspace is the Metaspace pre-tokenizer: spaces become the replacement
// rune, a replacement is prepended by the prepend scheme, and the text is
// split before every replacement when split is set.
type metaspace struct {
	replacement string
	prepend     string // "always", "first" or "never"
	split       bool
}

func parsePreTokenizer(raw json.RawMessage) (*metaspace, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, err := componentType(raw, "pre_tokenizer")
	if err != nil {
		return nil, err
	}
	if typ == "Sequence" {
		var seq struct {
			PreTokenizers []json.RawMessage `json:"pretokenizers"`
		}
		if err := json.Unmarshal(raw, &seq); err != nil {
			return nil, fmt.Errorf("%w: pre_tokenizer: %v", ErrInvalid, err)
		}
		switch len(seq.PreTokenizers) {
		case 0:
			return nil, nil
		case 1:
			return parsePreTokenizer(seq.PreTokenizers[0])
		}
		return nil, unsupported("pre_tokenizer", "Sequence of several pre-tokenizers")
	}
	if typ != "Metaspace" {
		return nil, unsupported("pre_tokenizer", typ)
	}
	m, err := parseMetaspace(raw, "pre_tokenizer")
	if err != nil {
		return nil, err
	}
	return &m, nil
}

func parseMetaspace(raw json.RawMessage, kind string) (metaspace, error) {
	var cfg struct {
		Replacement    *string `json:"replacement"`
		PrependScheme  *string `json:"prepend_scheme"`
		AddPrefixSpace *bool   `json:"add_prefix_space"`
		Split          *bool   `json:"split"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return metaspace{}, fmt.Errorf("%w: %s Metaspace: %v", ErrInvalid, kind, err)
	}
	m := metaspace{replacement: "▁", prepend: "always", split: true}
	if cfg.Replacement != nil {
		if utf8.RuneCountInString(*cfg.Replacement) != 1 {
			return m, fmt.Errorf("%w: %s Metaspace replacement %q is not one character", ErrInvalid, kind, *cfg.Replacement)
		}
		m.replacement = *cfg.Replacement
	}
	switch {
	case cfg.PrependScheme != nil:
		switch *cfg.PrependScheme {
		case "always", "first", "never":
			m.prepend = *cfg.PrependScheme
		default:
			return m, fmt.Errorf("%w: %s Metaspace prepend_scheme %q", ErrInvalid, kind, *cfg.PrependScheme)
		}
	case cfg.AddPrefixSpace != nil && !*cfg.AddPrefixSpace:
		m.prepend = "never"
	}
	if cfg.Split != nil {
		m.split = *cfg.Split
	}
	return m, nil
}

// words pre-tokenizes one normalized segment; atTextStart says whether the
// segment begins at offset 0 of the original text (for prepend "first").
func (m *metaspace) words(s string, atTextStart bool, dst []string) []string {
	s = strings.ReplaceAll(s, " ", m.replacement)
	if !strings.HasPrefix(s, m.replacement) && (m.prepend == "always" || m.prepend == "first" && atTextStart) {
		s = m.replacement + s
	}
	if !m.split || s == "" {
		return append(dst, s)
	}
	// MergedWithNext: every replacement starts a new word.
	start := 0
	for i := 1; i < len(s); {
		j := strings.Index(s[i:], m.replacement)
		if j < 0 {
			break
		}
		dst = append(dst, s[start:i+j])
		start = i + j
		i = start + len(m.replacement)
	}
	if start < len(s) {
		dst = append(dst, s[start:])
	}
	return dst
}

// template is a TemplateProcessing post-processor for single sequences.
type template struct {
	prefix, suffix []int32
}

func (t *Tokenizer) parsePostProcessor(raw json.RawMessage) ([]template, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, err := componentType(raw, "post_processor")
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var seq struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := json.Unmarshal(raw, &seq); err != nil {
			return nil, fmt.Errorf("%w: post_processor: %v", ErrInvalid, err)
		}
		var out []template
		for _, p := range seq.Processors {
			ts, err := t.parsePostProcessor(p)
			if err != nil {
				return nil, err
			}
			out = append(out, ts...)
		}
		return out, nil
	case "TemplateProcessing":
		return t.parseTemplate(raw)
	default:
		return nil, unsupported("post_processor", typ)
	}
}

func (t *Tokenizer) parseTemplate(raw json.RawMessage) ([]template, error) {
	var cfg struct {
		Single []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
			Sequence *struct {
				ID string `json:"id"`
			} `json:"Sequence"`
		} `json:"single"`
		SpecialTokens map[string]struct {
			IDs []int64 `json:"ids"`
		} `json:"special_tokens"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("%w: post_processor TemplateProcessing: %v", ErrInvalid, err)
	}
	var tpl template
	seenSeq := false
	for _, piece := range cfg.Single {
		switch {
		case piece.Sequence != nil:
			if seenSeq {
				return nil, unsupported("post_processor", "TemplateProcessing with the sequence twice")
			}
			seenSeq = true
		case piece.SpecialToken != nil:
			st, ok := cfg.SpecialTokens[piece.SpecialToken.ID]
			if !ok {
				return nil, fmt.Errorf("%w: post_processor names unknown special token %q", ErrInvalid, piece.SpecialToken.ID)
			}
			for _, id := range st.IDs {
				id32, err := checkID(id, "post_processor")
				if err != nil {
					return nil, err
				}
				if seenSeq {
					tpl.suffix = append(tpl.suffix, id32)
				} else {
					tpl.prefix = append(tpl.prefix, id32)
				}
			}
		default:
			return nil, fmt.Errorf("%w: post_processor template piece is neither SpecialToken nor Sequence", ErrInvalid)
		}
	}
	if !seenSeq {
		return nil, fmt.Errorf("%w: post_processor single template lacks the sequence", ErrInvalid)
	}
	return []template{tpl}, nil
}
