package llm

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// maxTopLogprobs is the largest TopLogprobs a request may ask for (OpenAI's
// limit).
const maxTopLogprobs = 20

// validate checks p against a vocabulary of vocab tokens.
func (p SamplingParams) validate(vocab int) error {
	switch {
	case p.MaxTokens < 0:
		return fmt.Errorf("%w: max_tokens %d is negative", ErrInvalidParams, p.MaxTokens)
	case p.Temperature < 0 || isNaN(p.Temperature):
		return fmt.Errorf("%w: temperature %g is negative", ErrInvalidParams, p.Temperature)
	case p.TopK < 0:
		return fmt.Errorf("%w: top_k %d is negative", ErrInvalidParams, p.TopK)
	case p.TopP < 0 || p.TopP > 1 || isNaN(p.TopP):
		return fmt.Errorf("%w: top_p %g is not between 0 and 1", ErrInvalidParams, p.TopP)
	case p.RepetitionPenalty < 0 || isNaN(p.RepetitionPenalty):
		return fmt.Errorf("%w: repetition_penalty %g is negative", ErrInvalidParams, p.RepetitionPenalty)
	case p.PresencePenalty < -2 || p.PresencePenalty > 2 || isNaN(p.PresencePenalty):
		return fmt.Errorf("%w: presence_penalty %g is not between -2 and 2", ErrInvalidParams, p.PresencePenalty)
	case p.FrequencyPenalty < -2 || p.FrequencyPenalty > 2 || isNaN(p.FrequencyPenalty):
		return fmt.Errorf("%w: frequency_penalty %g is not between -2 and 2", ErrInvalidParams, p.FrequencyPenalty)
	case p.TopLogprobs < 0 || p.TopLogprobs > maxTopLogprobs:
		return fmt.Errorf("%w: top_logprobs %d is not between 0 and %d", ErrInvalidParams, p.TopLogprobs, maxTopLogprobs)
	}
	for _, id := range p.StopTokenIDs {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("%w: stop token id %d is outside the vocabulary (%d tokens)", ErrInvalidParams, id, vocab)
		}
	}
	for _, s := range p.Stop {
		if s == "" {
			return fmt.Errorf("%w: empty stop string", ErrInvalidParams)
		}
	}
	return nil
}

func isNaN(f float32) bool { return f != f }

// sampler chooses one sequence's tokens. Its random source belongs to the
// sequence, so a seeded sequence draws the same numbers whatever shares its
// batch.
type sampler struct {
	params SamplingParams
	rng    *rand.Rand
	// counts holds how often each token was generated (presence and
	// frequency penalties); seen marks prompt and generated tokens
	// (repetition penalty). Both stay nil when their penalty is off.
	counts map[int32]int32
	seen   map[int32]bool
}

// newSampler prepares sampling for a sequence with the given prompt. An
// unseeded sequence draws its seed from the process-wide source.
func newSampler(p SamplingParams, prompt []int32) *sampler {
	seed := rand.Uint64()
	if p.Seed != nil {
		seed = *p.Seed
	}
	s := &sampler{params: p, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	if p.PresencePenalty != 0 || p.FrequencyPenalty != 0 {
		s.counts = make(map[int32]int32)
	}
	if p.RepetitionPenalty != 0 && p.RepetitionPenalty != 1 {
		s.seen = make(map[int32]bool, len(prompt))
		for _, id := range prompt {
			s.seen[id] = true
		}
	}
	return s
}

// observe records a generated token for the penalties.
func (s *sampler) observe(id int32) {
	if s.counts != nil {
		s.counts[id]++
	}
	if s.seen != nil {
		s.seen[id] = true
	}
}

// sampleScratch is memory reused across rows and steps by the one scheduler
// goroutine.
type sampleScratch struct {
	idx []int32
}

// choice is a sampled token with its log-probability and, when asked, the
// most likely alternatives (ids and log-probabilities, best first).
type choice struct {
	token   int32
	logprob float32
	top     []int32
	topLP   []float32
}

// sample picks the next token from logits, which it modifies in place
// (penalties, temperature).
func (s *sampler) sample(logits []float32, sc *sampleScratch) choice {
	s.applyPenalties(logits)
	p := s.params
	if p.Temperature > 0 && p.Temperature != 1 {
		inv := 1 / p.Temperature
		for i := range logits {
			logits[i] *= inv
		}
	}
	var tok int32
	if p.Temperature == 0 {
		tok = argmax(logits)
	} else {
		tok = s.draw(logits, sc)
	}
	c := choice{token: tok}
	if p.Logprobs || p.TopLogprobs > 0 {
		logZ := logSumExp(logits)
		c.logprob = logits[tok] - logZ
		if p.TopLogprobs > 0 {
			top := topIndices(logits, p.TopLogprobs, sc)
			c.top = slices.Clone(top)
			c.topLP = make([]float32, len(top))
			for i, id := range top {
				c.topLP[i] = logits[id] - logZ
			}
		}
	}
	return c
}

// applyPenalties applies the repetition penalty (HF: positive logits are
// divided by it, negative ones multiplied) over prompt and output, then the
// presence and frequency penalties (OpenAI: subtracted per generated
// occurrence) over the output.
func (s *sampler) applyPenalties(logits []float32) {
	if rp := s.params.RepetitionPenalty; s.seen != nil {
		for id := range s.seen {
			if int(id) >= len(logits) || id < 0 {
				continue
			}
			if logits[id] > 0 {
				logits[id] /= rp
			} else {
				logits[id] *= rp
			}
		}
	}
	if s.counts != nil {
		for id, n := range s.counts {
			if int(id) >= len(logits) || id < 0 {
				continue
			}
			logits[id] -= float32(n)*s.params.FrequencyPenalty + s.params.PresencePenalty
		}
	}
}

// draw samples from softmax(logits) restricted by top-k and top-p.
func (s *sampler) draw(logits []float32, sc *sampleScratch) int32 {
	p := s.params
	maxLogit := logits[argmax(logits)]
	k := len(logits)
	if p.TopK > 0 && p.TopK < k {
		k = p.TopK
	}
	topP := p.TopP
	if topP <= 0 || topP >= 1 {
		topP = 1
	}
	if k == len(logits) && topP == 1 {
		return s.drawFrom(logits, nil, maxLogit)
	}
	var total float64
	for _, l := range logits {
		total += math.Exp(float64(l - maxLogit))
	}
	// Find the nucleus among the k best without sorting the whole
	// vocabulary: look at the best 64 first and widen only when their mass
	// falls short of top_p.
	for n := min(k, 64); ; n = min(k, n*4) {
		cand := topIndices(logits, n, sc)
		if topP == 1 {
			return s.drawFrom(logits, cand, maxLogit)
		}
		var mass float64
		for i, id := range cand {
			mass += math.Exp(float64(logits[id]-maxLogit)) / total
			if mass >= float64(topP) {
				return s.drawFrom(logits, cand[:i+1], maxLogit)
			}
		}
		if n == k {
			return s.drawFrom(logits, cand, maxLogit)
		}
	}
}

// drawFrom samples among cand (every token when nil) in proportion to
// exp(logit - maxLogit).
func (s *sampler) drawFrom(logits []float32, cand []int32, maxLogit float32) int32 {
	var total float64
	if cand == nil {
		for _, l := range logits {
			total += math.Exp(float64(l - maxLogit))
		}
	} else {
		for _, id := range cand {
			total += math.Exp(float64(logits[id] - maxLogit))
		}
	}
	u := s.rng.Float64() * total
	if cand == nil {
		last := int32(0)
		for i, l := range logits {
			w := math.Exp(float64(l - maxLogit))
			if w == 0 {
				continue
			}
			last = int32(i)
			if u < w {
				return int32(i)
			}
			u -= w
		}
		return last
	}
	for _, id := range cand {
		w := math.Exp(float64(logits[id] - maxLogit))
		if u < w {
			return id
		}
		u -= w
	}
	return cand[len(cand)-1]
}

// argmax returns the index of the largest logit, the lowest on ties. It
// finds the maximum with four independent running maxima (the CPU overlaps
// their comparisons), then its first position.
func argmax(logits []float32) int32 {
	n := len(logits)
	if n == 0 {
		return 0
	}
	m0, m1, m2, m3 := logits[0], logits[0], logits[0], logits[0]
	i := 0
	for ; i+4 <= n; i += 4 {
		v := logits[i : i+4 : i+4]
		if v[0] > m0 {
			m0 = v[0]
		}
		if v[1] > m1 {
			m1 = v[1]
		}
		if v[2] > m2 {
			m2 = v[2]
		}
		if v[3] > m3 {
			m3 = v[3]
		}
	}
	for ; i < n; i++ {
		if logits[i] > m0 {
			m0 = logits[i]
		}
	}
	m0 = max(m0, m1, m2, m3)
	for i, l := range logits {
		if l == m0 {
			return int32(i)
		}
	}
	return 0
}

// logSumExp is log(sum(exp(logits))), computed stably.
func logSumExp(logits []float32) float32 {
	m := logits[argmax(logits)]
	var sum float64
	for _, l := range logits {
		sum += math.Exp(float64(l - m))
	}
	return m + float32(math.Log(sum))
}

// topIndices returns the n largest logits' indices, best first (lower index
// first on ties), in memory owned by sc.
func topIndices(logits []float32, n int, sc *sampleScratch) []int32 {
	n = min(n, len(logits))
	if cap(sc.idx) < n {
		sc.idx = make([]int32, 0, max(n, 64))
	}
	h := sc.idx[:0]
	// better orders by logit, then by lower index, so results are
	// deterministic.
	better := func(a, b int32) bool {
		return logits[a] > logits[b] || (logits[a] == logits[b] && a < b)
	}
	// h is a min-heap (worst candidate at the root) of at most n indices.
	down := func(i int) {
		for {
			l, r, w := 2*i+1, 2*i+2, i
			if l < len(h) && better(h[w], h[l]) {
				w = l
			}
			if r < len(h) && better(h[w], h[r]) {
				w = r
			}
			if w == i {
				return
			}
			h[i], h[w] = h[w], h[i]
			i = w
		}
	}
	for i := range logits {
		id := int32(i)
		if len(h) < n {
			h = append(h, id)
			for j := len(h) - 1; j > 0; {
				parent := (j - 1) / 2
				if !better(h[parent], h[j]) {
					break
				}
				h[parent], h[j] = h[j], h[parent]
				j = parent
			}
			continue
		}
		if better(id, h[0]) {
			h[0] = id
			down(0)
		}
	}
	slices.SortFunc(h, func(a, b int32) int {
		if c := cmp.Compare(logits[b], logits[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	sc.idx = h
	return h
}
