package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// bpeModel is a BPE model in the SentencePiece style: the initial symbols
// are characters, characters missing from the vocabulary fall back to byte
// tokens, and merges apply by rank.
type bpeModel struct {
	merges       map[uint64]merge // by pairKey(left, right)
	byteIDs      [256]int32       // id of <0xXX>, -1 when absent
	byteFallback bool
	unkID        int32 // -1 when the model has no unk token
	fuseUnk      bool
	ignoreMerges bool
}

type merge struct {
	rank  int32
	newID int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

func (t *Tokenizer) buildModel(raw json.RawMessage) error {
	if isNull(raw) {
		return fmt.Errorf("%w: model is missing", ErrInvalid)
	}
	typ, err := componentType(raw, "model")
	if err != nil {
		return err
	}
	if typ != "BPE" {
		if typ == "" {
			return unsupported("model", "without a type")
		}
		return unsupported("model", typ)
	}
	var cfg struct {
		Vocab                   map[string]int64  `json:"vocab"`
		Merges                  []json.RawMessage `json:"merges"`
		UnkToken                *string           `json:"unk_token"`
		FuseUnk                 bool              `json:"fuse_unk"`
		ByteFallback            bool              `json:"byte_fallback"`
		IgnoreMerges            bool              `json:"ignore_merges"`
		Dropout                 *float64          `json:"dropout"`
		ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("%w: model: %v", ErrInvalid, err)
	}
	switch {
	case cfg.Dropout != nil && *cfg.Dropout > 0:
		return unsupported("model", "BPE with dropout")
	case cfg.ContinuingSubwordPrefix != nil && *cfg.ContinuingSubwordPrefix != "":
		return unsupported("model", "BPE with continuing_subword_prefix")
	case cfg.EndOfWordSuffix != nil && *cfg.EndOfWordSuffix != "":
		return unsupported("model", "BPE with end_of_word_suffix")
	}
	m := &t.model
	m.byteFallback, m.fuseUnk, m.ignoreMerges = cfg.ByteFallback, cfg.FuseUnk, cfg.IgnoreMerges
	t.vocab = make(map[string]int32, len(cfg.Vocab))
	for tok, id := range cfg.Vocab {
		id32, err := checkID(id, "vocabulary")
		if err != nil {
			return err
		}
		t.vocab[tok] = id32
		t.setToken(id32, tok)
	}
	for b := range m.byteIDs {
		m.byteIDs[b] = -1
		if id, ok := t.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.byteIDs[b] = id
		}
	}
	m.unkID = -1
	if cfg.UnkToken != nil {
		id, ok := t.vocab[*cfg.UnkToken]
		if !ok {
			return fmt.Errorf("%w: unk_token %q is not in the vocabulary", ErrInvalid, *cfg.UnkToken)
		}
		m.unkID = id
	}
	m.merges = make(map[uint64]merge, len(cfg.Merges))
	for rank, rawMerge := range cfg.Merges {
		left, right, err := parseMerge(rawMerge)
		if err != nil {
			return fmt.Errorf("%w: merge %d: %v", ErrInvalid, rank, err)
		}
		a, okA := t.vocab[left]
		b, okB := t.vocab[right]
		n, okN := t.vocab[left+right]
		if !okA || !okB || !okN {
			return fmt.Errorf("%w: merge %d (%q %q) uses a token missing from the vocabulary", ErrInvalid, rank, left, right)
		}
		m.merges[pairKey(a, b)] = merge{rank: int32(rank), newID: n}
	}
	return nil
}

// parseMerge accepts "a b" and ["a", "b"].
func parseMerge(raw json.RawMessage) (string, string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		parts := strings.Split(s, " ")
		if len(parts) != 2 {
			return "", "", fmt.Errorf("%q is not two space-separated tokens", s)
		}
		return parts[0], parts[1], nil
	}
	var pair []string
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
		return "", "", fmt.Errorf("want \"a b\" or [\"a\", \"b\"], got %.40s", raw)
	}
	return pair[0], pair[1], nil
}

// symbol is a node of the doubly linked list BPE merges in place.
type symbol struct {
	id         int32
	prev, next int32 // -1 at the ends
	removed    bool
}

// mergeItem is a candidate merge of the symbol at pos with its successor.
type mergeItem struct {
	rank  int32
	pos   int32
	newID int32
}

// mergeQueue is a binary min-heap of candidates ordered by rank, then
// leftmost position, as in the reference. It is hand-written because
// container/heap boxes every pushed item.
type mergeQueue []mergeItem

func (a mergeItem) less(b mergeItem) bool {
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	return a.pos < b.pos
}

func (q *mergeQueue) push(it mergeItem) {
	h := append(*q, it)
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h[i].less(h[parent]) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
	*q = h
}

func (q *mergeQueue) pop() mergeItem {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	*q = h[:last]
	q.siftDown(0)
	return top
}

// init orders a queue filled by append, in linear time.
func (q *mergeQueue) init() {
	for i := len(*q)/2 - 1; i >= 0; i-- {
		q.siftDown(i)
	}
}

func (q *mergeQueue) siftDown(i int) {
	h := *q
	for {
		small, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h[l].less(h[small]) {
			small = l
		}
		if r < len(h) && h[r].less(h[small]) {
			small = r
		}
		if small == i {
			return
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
}

// bpeScratch holds per-call buffers so that long prompts do not allocate
// per word.
type bpeScratch struct {
	symbols []symbol
	queue   mergeQueue
}

// encodeWord appends the ids of one pre-tokenized word to dst.
func (t *Tokenizer) encodeWord(word string, sc *bpeScratch, dst []int32) []int32 {
	m := &t.model
	if word == "" {
		return dst
	}
	if m.ignoreMerges {
		if id, ok := t.vocab[word]; ok {
			return append(dst, id)
		}
	}
	syms := sc.symbols[:0]
	add := func(id int32) {
		syms = append(syms, symbol{id: id, prev: int32(len(syms)) - 1, next: int32(len(syms)) + 1})
	}
	pendingUnk := false
	for i := 0; i < len(word); {
		_, size := utf8.DecodeRuneInString(word[i:])
		ch := word[i : i+size]
		i += size
		if id, ok := t.vocab[ch]; ok {
			if pendingUnk {
				add(m.unkID)
				pendingUnk = false
			}
			add(id)
			continue
		}
		if m.byteFallback && t.hasByteTokens(ch) {
			// As in the reference, a pending unk is not flushed here: it
			// follows these byte tokens.
			for j := 0; j < len(ch); j++ {
				add(m.byteIDs[ch[j]])
			}
			continue
		}
		if m.unkID < 0 {
			// The reference fails the whole encode here; dropping the
			// character keeps Encode total.
			continue
		}
		if pendingUnk && !m.fuseUnk {
			add(m.unkID)
		}
		pendingUnk = true
	}
	if pendingUnk {
		add(m.unkID)
	}
	if len(syms) == 0 {
		sc.symbols = syms
		return dst
	}
	syms[len(syms)-1].next = -1

	q := sc.queue[:0]
	for i := 0; i+1 < len(syms); i++ {
		if mg, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			q = append(q, mergeItem{rank: mg.rank, pos: int32(i), newID: mg.newID})
		}
	}
	q.init()
	for len(q) > 0 {
		top := q.pop()
		cur := &syms[top.pos]
		if cur.removed || cur.next < 0 {
			continue
		}
		right := &syms[cur.next]
		// Skip stale entries: the pair at pos changed since it was queued.
		if mg, ok := m.merges[pairKey(cur.id, right.id)]; !ok || mg.newID != top.newID {
			continue
		}
		cur.id = top.newID
		right.removed = true
		cur.next = right.next
		if cur.next >= 0 {
			syms[cur.next].prev = top.pos
		}
		if cur.prev >= 0 {
			if mg, ok := m.merges[pairKey(syms[cur.prev].id, cur.id)]; ok {
				q.push(mergeItem{rank: mg.rank, pos: cur.prev, newID: mg.newID})
			}
		}
		if cur.next >= 0 {
			if mg, ok := m.merges[pairKey(cur.id, syms[cur.next].id)]; ok {
				q.push(mergeItem{rank: mg.rank, pos: top.pos, newID: mg.newID})
			}
		}
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		dst = append(dst, syms[i].id)
	}
	sc.symbols, sc.queue = syms, q
	return dst
}

// hasByteTokens reports whether every byte of s has a <0xXX> token.
func (t *Tokenizer) hasByteTokens(s string) bool {
	for i := 0; i < len(s); i++ {
		if t.model.byteIDs[s[i]] < 0 {
			return false
		}
	}
	return true
}
