package llm

import (
	"math"
	"slices"
	"testing"
)

func TestPenalties(t *testing.T) {
	tests := []struct {
		name   string
		params SamplingParams
		prompt []int32
		output []int32
		logits []float32
		want   []float32
	}{
		{"off", SamplingParams{}, []int32{0, 1}, []int32{2, 2}, []float32{1, -1, 2, 0}, []float32{1, -1, 2, 0}},
		{"repetition over prompt and output", SamplingParams{RepetitionPenalty: 2}, []int32{0, 1}, []int32{2, 2},
			[]float32{1, -1, 2, 0}, []float32{0.5, -2, 1, 0}},
		{"repetition below 1 favours repeats", SamplingParams{RepetitionPenalty: 0.5}, []int32{0}, nil,
			[]float32{1, 1}, []float32{2, 1}},
		{"presence once per generated token", SamplingParams{PresencePenalty: 0.5}, []int32{3}, []int32{2, 2, 0},
			[]float32{1, 1, 1, 1}, []float32{0.5, 1, 0.5, 1}},
		{"frequency per occurrence", SamplingParams{FrequencyPenalty: 0.25}, []int32{3}, []int32{2, 2, 0},
			[]float32{1, 1, 1, 1}, []float32{0.75, 1, 0.5, 1}},
		{"all three", SamplingParams{RepetitionPenalty: 2, PresencePenalty: 1, FrequencyPenalty: 1}, []int32{3}, []int32{2, 2},
			[]float32{4, 4, 4, 4}, []float32{4, 4, 2 - 3, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSampler(tt.params, tt.prompt)
			for _, id := range tt.output {
				s.observe(id)
			}
			got := slices.Clone(tt.logits)
			s.applyPenalties(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestArgmaxAndTopIndices(t *testing.T) {
	logits := []float32{0.5, 3, -1, 3, 2, 7, 7, 0, 1}
	if got := argmax(logits); got != 5 {
		t.Errorf("argmax = %d, want 5 (the first of the tied maxima)", got)
	}
	var sc sampleScratch
	if got := topIndices(logits, 4, &sc); !slices.Equal(got, []int32{5, 6, 1, 3}) {
		t.Errorf("topIndices(4) = %v, want [5 6 1 3]", got)
	}
	if got := topIndices(logits, 20, &sc); len(got) != len(logits) || got[len(got)-1] != 2 {
		t.Errorf("topIndices(20) = %v", got)
	}
	long := make([]float32, 1001)
	for i := range long {
		long[i] = float32(i % 97)
	}
	if got := argmax(long); got != 96 {
		t.Errorf("argmax of a long slice = %d, want 96", got)
	}
}

// TestSampleDistribution draws many tokens and compares their frequencies
// with the distribution top-k, top-p and temperature leave.
func TestSampleDistribution(t *testing.T) {
	base := []float32{2, 1, 0, -1, -2, -30}
	probs := func(temp float32, keep int) []float64 {
		p := make([]float64, len(base))
		var sum float64
		for i := range keep {
			p[i] = math.Exp(float64(base[i] / temp))
			sum += p[i]
		}
		for i := range p {
			p[i] /= sum
		}
		return p
	}
	tests := []struct {
		name   string
		params SamplingParams
		want   []float64
	}{
		{"temperature 1", SamplingParams{Temperature: 1}, probs(1, 6)},
		{"temperature 0.5", SamplingParams{Temperature: 0.5}, probs(0.5, 6)},
		{"top k 2", SamplingParams{Temperature: 1, TopK: 2}, probs(1, 2)},
		// The two best tokens hold 0.64 + 0.23 = 0.87 of the mass: top_p 0.8
		// keeps both, top_p 0.5 the first only.
		{"top p 0.8", SamplingParams{Temperature: 1, TopP: 0.8}, probs(1, 2)},
		{"top p 0.5", SamplingParams{Temperature: 1, TopP: 0.5}, probs(1, 1)},
		{"top k and top p", SamplingParams{Temperature: 1, TopK: 3, TopP: 0.95}, probs(1, 3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seed := uint64(1)
			tt.params.Seed = &seed
			s := newSampler(tt.params, nil)
			var sc sampleScratch
			const n = 20000
			counts := make([]float64, len(base))
			for range n {
				c := s.sample(slices.Clone(base), &sc)
				counts[c.token]++
			}
			for i := range counts {
				got := counts[i] / n
				if math.Abs(got-tt.want[i]) > 0.015 {
					t.Errorf("token %d: frequency %.3f, want %.3f", i, got, tt.want[i])
				}
			}
		})
	}
}

func TestSampleSeedAndLogprobs(t *testing.T) {
	logits := make([]float32, 500)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i)))
	}
	draw := func(seed uint64) []int32 {
		s := newSampler(SamplingParams{Temperature: 1, Seed: &seed}, nil)
		var sc sampleScratch
		var out []int32
		for range 30 {
			out = append(out, s.sample(slices.Clone(logits), &sc).token)
		}
		return out
	}
	if a, b := draw(3), draw(3); !slices.Equal(a, b) {
		t.Errorf("seed 3 twice: %v and %v", a, b)
	}
	if a, b := draw(3), draw(4); slices.Equal(a, b) {
		t.Errorf("seeds 3 and 4 drew the same 30 tokens")
	}

	s := newSampler(SamplingParams{Logprobs: true, TopLogprobs: 2}, nil)
	c := s.sample([]float32{0, float32(math.Log(3))}, &sampleScratch{})
	// softmax([0, ln 3]) = [0.25, 0.75]
	if c.token != 1 || math.Abs(float64(c.logprob)-math.Log(0.75)) > 1e-6 ||
		!slices.Equal(c.top, []int32{1, 0}) || math.Abs(float64(c.topLP[1])-math.Log(0.25)) > 1e-6 {
		t.Errorf("choice %+v", c)
	}
}

func TestValidateParams(t *testing.T) {
	nan := float32(math.NaN())
	bad := []SamplingParams{
		{MaxTokens: -1}, {Temperature: nan}, {TopK: -1}, {TopP: -0.1}, {RepetitionPenalty: -1},
		{PresencePenalty: 2.5}, {FrequencyPenalty: -3}, {TopLogprobs: -1}, {StopTokenIDs: []int32{-1}},
	}
	for _, p := range bad {
		if err := p.validate(100); err == nil {
			t.Errorf("validate(%+v) = nil, want an error", p)
		}
	}
	good := SamplingParams{MaxTokens: 5, Temperature: 2, TopK: 5, TopP: 1, RepetitionPenalty: 1.1, PresencePenalty: -2,
		FrequencyPenalty: 2, TopLogprobs: 20, StopTokenIDs: []int32{99}, Stop: []string{"x"}}
	if err := good.validate(100); err != nil {
		t.Errorf("validate(%+v) = %v", good, err)
	}
}

// FuzzStopMatcher checks that the text a stopMatcher releases never contains
// a stop string and, without a match, adds up to the input.
func FuzzStopMatcher(f *testing.F) {
	f.Add("ab", "xaby", "a", "b")
	f.Add("<|end|>", "Hello <|e", "nd|> more", "")
	f.Add("é", "caf\xc3", "\xa9!", "x")
	f.Fuzz(func(t *testing.T, stop, a, b, c string) {
		if stop == "" {
			return
		}
		m := stopMatcher{stops: []string{stop}}
		var out string
		stopped := false
		for _, piece := range []string{a, b, c} {
			text, s := m.push(piece)
			out += text
			if s {
				stopped = true
				break
			}
		}
		input := a + b + c
		if !stopped {
			out += m.flush()
			if out != input {
				t.Fatalf("released %q, input %q", out, input)
			}
			if containsBefore(input, stop) {
				t.Fatalf("no stop reported, but %q contains %q", input, stop)
			}
			return
		}
		if len(out) > len(input) || input[:len(out)] != out || !containsBefore(input, stop) {
			t.Fatalf("stopped with %q from %q", out, input)
		}
		if containsBefore(out, stop) {
			t.Fatalf("released text %q contains the stop string %q", out, stop)
		}
	})
}

func containsBefore(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
