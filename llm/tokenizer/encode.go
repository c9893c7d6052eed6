package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// matchToken is an added token as the splitter sees it.
type matchToken struct {
	content                    string
	id                         int32
	lstrip, rstrip, singleWord bool
}

// addedTokenMatcher finds added tokens in text, leftmost first and then
// longest, with a byte trie.
type addedTokenMatcher struct {
	nodes  []trieNode
	tokens []matchToken
	first  [256]bool // bytes that start some token
}

type trieNode struct {
	next  map[byte]int32
	token int32 // index into tokens, -1 when no token ends here
}

func newAddedTokenMatcher(tokens []matchToken) addedTokenMatcher {
	m := addedTokenMatcher{nodes: []trieNode{{token: -1}}}
	for _, tok := range tokens {
		if tok.content == "" {
			continue
		}
		n := int32(0)
		for i := 0; i < len(tok.content); i++ {
			c := tok.content[i]
			child, ok := m.nodes[n].next[c]
			if !ok {
				if m.nodes[n].next == nil {
					m.nodes[n].next = make(map[byte]int32)
				}
				child = int32(len(m.nodes))
				m.nodes[n].next[c] = child
				m.nodes = append(m.nodes, trieNode{token: -1})
			}
			n = child
		}
		if m.nodes[n].token < 0 {
			m.nodes[n].token = int32(len(m.tokens))
			m.tokens = append(m.tokens, tok)
		} else {
			// A later duplicate replaces the earlier one, as a map would.
			m.tokens[m.nodes[n].token] = tok
		}
		m.first[tok.content[0]] = true
	}
	return m
}

// find returns the leftmost-longest match at or after from.
func (m *addedTokenMatcher) find(s string, from int) (start, end int, tok *matchToken, ok bool) {
	if len(m.tokens) == 0 {
		return 0, 0, nil, false
	}
	for i := from; i < len(s); i++ {
		if !m.first[s[i]] {
			continue
		}
		n, best, bestEnd := int32(0), int32(-1), 0
		for j := i; j < len(s); j++ {
			child, ok := m.nodes[n].next[s[j]]
			if !ok {
				break
			}
			n = child
			if m.nodes[n].token >= 0 {
				best, bestEnd = m.nodes[n].token, j+1
			}
		}
		if best >= 0 {
			return i, bestEnd, &m.tokens[best], true
		}
	}
	return 0, 0, nil, false
}

// piece is a segment of text: an added token (id >= 0) or text to encode.
type piece struct {
	id     int32
	text   string
	offset int // byte offset of text in the string that was split
}

// split cuts s at added tokens, honouring single_word, lstrip and rstrip
// exactly as the reference splitter does.
func (m *addedTokenMatcher) split(s string, dst []piece) []piece {
	startOffset := 0
	for from := 0; from < len(s); {
		start, end, tok, ok := m.find(s, from)
		if !ok {
			break
		}
		from = end
		if tok.singleWord && !isSingleWord(s, start, end) {
			continue
		}
		stop := end
		if tok.lstrip {
			start = max(leftmostSpaceAtEnd(s[:start]), startOffset)
		}
		if tok.rstrip {
			stop += rightmostSpaceAtStart(s[stop:])
		}
		if startOffset < start {
			dst = append(dst, piece{id: -1, text: s[startOffset:start], offset: startOffset})
		}
		dst = append(dst, piece{id: tok.id})
		startOffset = max(startOffset, stop)
	}
	if startOffset < len(s) {
		dst = append(dst, piece{id: -1, text: s[startOffset:], offset: startOffset})
	}
	return dst
}

// leftmostSpaceAtEnd is where the trailing whitespace of s starts.
func leftmostSpaceAtEnd(s string) int {
	i := len(s)
	for i > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:i])
		if !unicode.IsSpace(r) {
			break
		}
		i -= size
	}
	return i
}

// rightmostSpaceAtStart is the length of the leading whitespace of s.
func rightmostSpaceAtStart(s string) int {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += size
	}
	return i
}

// isSingleWord reports whether s[start:end] is not glued to word characters.
func isSingleWord(s string, start, end int) bool {
	if start > 0 {
		if r, _ := utf8.DecodeLastRuneInString(s[:start]); isWordRune(r) {
			return false
		}
	}
	if end < len(s) {
		if r, _ := utf8.DecodeRuneInString(s[end:]); isWordRune(r) {
			return false
		}
	}
	return true
}

// isWordRune approximates the Unicode \w class.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Join_Control, r) ||
		unicode.Is(unicode.Other_Alphabetic, r)
}

// Encode converts text to token ids. With addSpecial the post-processor's
// tokens (the bos token for Phi-3) are added. Added tokens written in the
// text are always recognized.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int32 {
	var (
		sc     bpeScratch
		ids    []int32
		words  []string
		pieces = t.addedRaw.split(text, nil)
		subs   []piece
	)
	for _, p := range pieces {
		if p.id >= 0 {
			ids = append(ids, p.id)
			continue
		}
		norm := normalize(t.normalizers, p.text)
		subs = t.addedNorm.split(norm, subs[:0])
		for _, sub := range subs {
			if sub.id >= 0 {
				ids = append(ids, sub.id)
				continue
			}
			if t.preTok == nil {
				ids = t.encodeWord(sub.text, &sc, ids)
				continue
			}
			words = t.preTok.words(sub.text, p.offset == 0 && sub.offset == 0, words[:0])
			for _, w := range words {
				ids = t.encodeWord(w, &sc, ids)
			}
		}
	}
	if addSpecial {
		for _, tpl := range t.post {
			out := make([]int32, 0, len(tpl.prefix)+len(ids)+len(tpl.suffix))
			out = append(out, tpl.prefix...)
			out = append(out, ids...)
			ids = append(out, tpl.suffix...)
		}
	}
	if ids == nil {
		ids = []int32{}
	}
	return ids
}
