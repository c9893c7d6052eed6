package tokenizer

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStreamDecoder(t *testing.T) {
	tok := loadPhi3(t)
	const flush = -100 // marks the Flush call in ids
	for _, tc := range []struct {
		name        string
		ids         []int32
		skipSpecial bool
		want        []string // one result per Add, then Flush
	}{
		{"leading space stripped once", []int32{15043, 15043, flush}, false, []string{"Hello", " Hello", ""}},
		{"lone space tokens", []int32{29871, 29871, 15043, flush}, false, []string{"", " ", " Hello", ""}},
		{"emoji over byte tokens", []int32{29871, 243, 162, 169, 156, 15043, flush}, false,
			[]string{"", "", "", "", "", "🦙 Hello", ""}},
		{"emoji at the end", []int32{15043, 29871, 243, 162, 169, 156, flush}, false,
			[]string{"Hello", " ", "", "", "", "", "🦙"}},
		{"specials kept", []int32{1, 15043, 32007, flush}, false, []string{"<s>", " Hello", "<|end|>", ""}},
		{"specials skipped", []int32{1, 15043, 32007, 15043, flush}, true, []string{"", "Hello", "", " Hello", ""}},
		{"skipped special inside a byte run", []int32{15043, 229, 32007, 133, 175, flush}, true,
			[]string{"Hello", "", "", "", "", "€"}},
		{"invalid run is final at once", []int32{229, 68, 68, 15043, flush}, false,
			[]string{"", "\uFFFD\uFFFD", "\uFFFD", " Hello", ""}},
		{"later byte invalidates the run", []int32{15043, 68, 229, 15043, flush}, false,
			[]string{"Hello", "", "", "\uFFFD\uFFFD Hello", ""}},
		{"incomplete run at flush", []int32{15043, 229, 133, flush}, false, []string{"Hello", "", "", "\uFFFD\uFFFD"}},
		{"unknown ids dropped", []int32{40000, 15043, -5, flush}, false, []string{"", "Hello", "", ""}},
		{"reuse after flush", []int32{15043, flush, 15043, flush}, false, []string{"Hello", "", "Hello", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tok.NewStreamDecoder(tc.skipSpecial)
			var got []string
			for _, id := range tc.ids {
				if id == flush {
					got = append(got, d.Flush())
				} else {
					got = append(got, d.Add(id))
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("outputs = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestStreamMatchesDecode checks the streaming contract on random id
// sequences that mix byte tokens, specials, spaces and unknown ids.
func TestStreamMatchesDecode(t *testing.T) {
	tok := loadPhi3(t)
	pool := []int32{1, 2, 0, 32000, 32001, 32007, 32010, 29871, 29871, 259, 15043, 10994, 13, 29892, 40000, -1}
	for b := range 256 {
		if b >= 0x80 || b%7 == 0 {
			pool = append(pool, int32(3+b)) // byte tokens, mostly non-ASCII
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for n := range 3000 {
		ids := make([]int32, rng.IntN(30))
		for i := range ids {
			ids[i] = pool[rng.IntN(len(pool))]
		}
		// Add real byte sequences too, so that valid runs are common.
		if n%2 == 0 {
			ids = append(ids, tok.Encode(randomTexts(rng, 11)[10], false)...)
		}
		for _, skip := range []bool{false, true} {
			checkStream(t, tok, ids, skip)
		}
	}
}

func checkStream(t *testing.T, tok *Tokenizer, ids []int32, skip bool) {
	t.Helper()
	d := tok.NewStreamDecoder(skip)
	var b strings.Builder
	for _, id := range ids {
		s := d.Add(id)
		if !utf8.ValidString(s) {
			t.Fatalf("ids %v skip=%v: Add(%d) = %q, not valid UTF-8", ids, skip, id, s)
		}
		b.WriteString(s)
	}
	b.WriteString(d.Flush())
	if want := tok.Decode(ids, skip); b.String() != want {
		t.Fatalf("ids %v skip=%v: stream = %q, Decode = %q", ids, skip, b.String(), want)
	}
}
