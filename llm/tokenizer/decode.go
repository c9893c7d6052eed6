package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// decoderPipeline is the flattened decoder sequence of tokenizer.json.
type decoderPipeline struct {
	steps        []decodeStep
	byteFallback bool // a ByteFallback step is present
}

type decodeStep struct {
	kind             string // "Replace", "ByteFallback", "Fuse", "Strip" or "Metaspace"
	pattern, content string // Replace
	stripRune        rune   // Strip
	stripStart       int
	stripStop        int
	meta             metaspace // Metaspace
}

func parseDecoder(raw json.RawMessage) (decoderPipeline, error) {
	var p decoderPipeline
	if isNull(raw) {
		return p, unsupported("decoder", "null (tokens joined by spaces)")
	}
	if err := p.add(raw); err != nil {
		return p, err
	}
	// Steps after Fuse see the whole text at once. The streaming decoder
	// decodes a window at a time, which is exact only when those steps act
	// on the start of the text alone.
	fused := false
	for _, st := range p.steps {
		switch {
		case st.kind == "Fuse":
			fused = true
		case fused && st.kind == "Strip" && st.stripStop > 0:
			return p, unsupported("decoder", "Strip of the end after Fuse")
		case fused && st.kind != "Strip" && st.kind != "Fuse":
			return p, unsupported("decoder", st.kind+" after Fuse")
		case st.kind == "ByteFallback":
			p.byteFallback = true
		}
	}
	return p, nil
}

func (p *decoderPipeline) add(raw json.RawMessage) error {
	typ, err := componentType(raw, "decoder")
	if err != nil {
		return err
	}
	switch typ {
	case "Sequence":
		var seq struct {
			Decoders []json.RawMessage `json:"decoders"`
		}
		if err := json.Unmarshal(raw, &seq); err != nil {
			return fmt.Errorf("%w: decoder: %v", ErrInvalid, err)
		}
		for _, d := range seq.Decoders {
			if isNull(d) {
				continue
			}
			if err := p.add(d); err != nil {
				return err
			}
		}
	case "ByteFallback", "Fuse":
		p.steps = append(p.steps, decodeStep{kind: typ})
	case "Replace":
		var r struct {
			Pattern json.RawMessage `json:"pattern"`
			Content string          `json:"content"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("%w: decoder Replace: %v", ErrInvalid, err)
		}
		pat, err := stringPattern(r.Pattern, "decoder")
		if err != nil {
			return err
		}
		p.steps = append(p.steps, decodeStep{kind: typ, pattern: pat, content: r.Content})
	case "Strip":
		var s struct {
			Content string `json:"content"`
			Start   int    `json:"start"`
			Stop    int    `json:"stop"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%w: decoder Strip: %v", ErrInvalid, err)
		}
		if utf8.RuneCountInString(s.Content) != 1 || s.Start < 0 || s.Stop < 0 {
			return fmt.Errorf("%w: decoder Strip wants one character and non-negative counts", ErrInvalid)
		}
		r, _ := utf8.DecodeRuneInString(s.Content)
		p.steps = append(p.steps, decodeStep{kind: typ, stripRune: r, stripStart: s.Start, stripStop: s.Stop})
	case "Metaspace":
		m, err := parseMetaspace(raw, "decoder")
		if err != nil {
			return err
		}
		p.steps = append(p.steps, decodeStep{kind: typ, meta: m})
	default:
		return unsupported("decoder", typ)
	}
	return nil
}

// decode runs the pipeline over token strings. atStart says the tokens begin
// the text: only then do Strip after Fuse and the Metaspace first-token rule
// touch the first token, which lets the streaming decoder decode a window
// that continues earlier text.
func (p *decoderPipeline) decode(tokens []string, atStart bool) string {
	toks := append([]string(nil), tokens...)
	fused := false
	for _, st := range p.steps {
		switch st.kind {
		case "Replace":
			for i := range toks {
				toks[i] = strings.ReplaceAll(toks[i], st.pattern, st.content)
			}
		case "ByteFallback":
			toks = byteFallback(toks)
		case "Fuse":
			toks = []string{strings.Join(toks, "")}
			fused = true
		case "Strip":
			for i := range toks {
				toks[i] = st.strip(toks[i], atStart || !fused)
			}
		case "Metaspace":
			for i := range toks {
				drop := i == 0 && atStart && st.meta.prepend != "never"
				toks[i] = st.meta.decodeToken(toks[i], drop)
			}
		}
	}
	return strings.Join(toks, "")
}

// strip removes up to stripStart leading and stripStop trailing copies of
// the strip rune; the leading cut only when cutStart is set.
func (st *decodeStep) strip(s string, cutStart bool) string {
	if cutStart {
		for n := 0; n < st.stripStart; n++ {
			r, size := utf8.DecodeRuneInString(s)
			if size == 0 || r != st.stripRune || r == utf8.RuneError && size == 1 {
				break
			}
			s = s[size:]
		}
	}
	for n := 0; n < st.stripStop; n++ {
		r, size := utf8.DecodeLastRuneInString(s)
		if size == 0 || r != st.stripRune || r == utf8.RuneError && size == 1 {
			break
		}
		s = s[:len(s)-size]
	}
	return s
}

// decodeToken turns replacement runes into spaces, or drops them all when
// drop is set (the reference does this for the first token).
func (m *metaspace) decodeToken(s string, drop bool) string {
	if drop {
		return strings.ReplaceAll(s, m.replacement, "")
	}
	return strings.ReplaceAll(s, m.replacement, " ")
}

// byteValue parses a byte token "<0xHH>".
func byteValue(tok string) (byte, bool) {
	if len(tok) != 6 || tok[:3] != "<0x" || tok[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexDigit(tok[3])
	lo, ok2 := hexDigit(tok[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// byteFallback joins runs of byte tokens into text; a run that is not valid
// UTF-8 becomes one U+FFFD per byte, as in the reference.
func byteFallback(toks []string) []string {
	out := toks[:0]
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		out = append(out, bytesText(run))
		run = run[:0]
	}
	for _, tok := range toks {
		if b, ok := byteValue(tok); ok {
			run = append(run, b)
			continue
		}
		flush()
		out = append(out, tok)
	}
	flush()
	return out
}

func bytesText(run []byte) string {
	if utf8.Valid(run) {
		return string(run)
	}
	return strings.Repeat("\uFFFD", len(run))
}

// tokenText returns the token string of id; ok is false for ids outside the
// vocabulary and, with skipSpecial, for special tokens.
func (t *Tokenizer) tokenText(id int32, skipSpecial bool) (string, bool) {
	if id < 0 || int(id) >= len(t.tokens) || !t.present[id] {
		return "", false
	}
	if skipSpecial && t.IsSpecial(id) {
		return "", false
	}
	return t.tokens[id], true
}

// Decode converts ids back to text. Ids outside the vocabulary are dropped;
// with skipSpecial so are the tokens IsSpecial reports.
func (t *Tokenizer) Decode(ids []int32, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if s, ok := t.tokenText(id, skipSpecial); ok {
			toks = append(toks, s)
		}
	}
	return t.decoder.decode(toks, true)
}

// TokenText is the decoded text of one token as it reads in the middle of a
// text (no leading space is stripped), for logprobs. A lone byte token that
// is not a whole character reads as U+FFFD; unknown ids read as "".
func (t *Tokenizer) TokenText(id int32) string {
	s, ok := t.tokenText(id, false)
	if !ok {
		return ""
	}
	return t.decoder.decode([]string{s}, false)
}

// StreamDecoder turns ids into text one at a time. It is not safe for
// concurrent use.
type StreamDecoder struct {
	t           *Tokenizer
	skipSpecial bool

	// pending holds the tokens of the current window. Windows end after a
	// non-byte token, where no later token can change the window's text.
	pending []string
	// emitted is how many bytes of the window's text were returned.
	emitted int
	// atStart: no text has been returned yet, so the window is the start
	// of the text and the decoder's leading-space rules apply to it.
	atStart bool
	// runStart is the index in pending of the trailing run of byte tokens
	// (-1 when none); run holds its bytes.
	runStart int
	run      []byte
}

// NewStreamDecoder returns a decoder for one stream of generated ids.
func (t *Tokenizer) NewStreamDecoder(skipSpecial bool) *StreamDecoder {
	return &StreamDecoder{t: t, skipSpecial: skipSpecial, atStart: true, runStart: -1}
}

// Add consumes one id and returns the text it completes, possibly "". The
// text never ends inside a UTF-8 character.
func (d *StreamDecoder) Add(id int32) string {
	tok, ok := d.t.tokenText(id, d.skipSpecial)
	if !ok {
		return ""
	}
	dec := &d.t.decoder
	d.pending = append(d.pending, tok)
	if b, isByte := byteValue(tok); isByte && dec.byteFallback {
		if d.runStart < 0 {
			d.runStart = len(d.pending) - 1
			d.run = d.run[:0]
		}
		d.run = append(d.run, b)
		if validPrefix(d.run) {
			// Whether the run decodes to its characters or to U+FFFD
			// depends on bytes still to come: hold the whole run back.
			return d.emit(dec.decode(d.pending[:d.runStart], d.atStart))
		}
		// An invalid run stays invalid: its U+FFFDs are final.
		return d.emit(dec.decode(d.pending, d.atStart))
	}
	d.runStart = -1
	text := dec.decode(d.pending, d.atStart)
	out := d.emit(text)
	if !d.atStart || text != "" {
		d.atStart = false
		d.pending = d.pending[:0]
		d.emitted = 0
	}
	return out
}

// Flush returns the rest of the text at the end of the stream: a trailing
// run of byte tokens that is not valid UTF-8 reads as U+FFFD per byte. The
// decoder is then ready for a new stream.
func (d *StreamDecoder) Flush() string {
	out := d.emit(d.t.decoder.decode(d.pending, d.atStart))
	d.pending = d.pending[:0]
	d.emitted = 0
	d.atStart = true
	d.runStart = -1
	return out
}

// emit returns the part of the window's text not yet returned.
func (d *StreamDecoder) emit(text string) string {
	if len(text) <= d.emitted {
		return ""
	}
	out := text[d.emitted:]
	d.emitted = len(text)
	return out
}

// validPrefix reports whether b is valid UTF-8 or a valid start of it.
func validPrefix(b []byte) bool {
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			return !utf8.FullRune(b)
		}
		b = b[size:]
	}
	return true
}
