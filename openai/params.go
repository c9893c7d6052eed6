package openai

import (
	"fmt"

	"github.com/modelserver/modelserver/llm"
)

// Limits on request values.
const (
	// maxTopLogprobs is the engine's bound on alternatives per token.
	maxTopLogprobs = 20
)

// plan is a validated request: what to generate and how to answer.
type plan struct {
	prompts      [][]int32 // one per prompt; each runs n times
	params       llm.SamplingParams
	n            int
	stream       bool
	includeUsage bool
	logprobs     bool
}

// sequences is how many sequences the plan runs.
func (p *plan) sequences() int { return len(p.prompts) * p.n }

// request returns sequence i's engine request. Choice j of a prompt gets
// seed+j, so n > 1 with a seed gives n different, reproducible samples.
func (p *plan) request(i int) llm.Request {
	params := p.params
	if params.Seed != nil {
		seed := *params.Seed + uint64(i%p.n)
		params.Seed = &seed
	}
	return llm.Request{Prompt: p.prompts[i/p.n], Params: params}
}

// validateSampling checks the shared fields and fills p's sampling
// parameters, n and streaming flags. maxN caps n.
func validateSampling(m Model, f *samplingFields, p *plan, maxN int) error {
	if err := checkModelName(m, f.Model); err != nil {
		return err
	}
	p.n = 1
	if f.N != nil {
		if *f.N < 1 || *f.N > maxN {
			return fieldErrorf("n", "n must be between 1 and %d, got %d.", maxN, *f.N)
		}
		p.n = *f.N
	}
	maxTokens, param := f.MaxTokens, "max_tokens"
	if f.MaxCompletionTokens != nil {
		maxTokens, param = f.MaxCompletionTokens, "max_completion_tokens"
	}
	if maxTokens != nil {
		if *maxTokens < 1 {
			return fieldErrorf(param, "%s must be at least 1, got %d.", param, *maxTokens)
		}
		p.params.MaxTokens = *maxTokens
	}
	if t := f.Temperature; t != nil {
		if *t < 0 || *t > 2 {
			return fieldErrorf("temperature", "temperature must be between 0 and 2, got %g.", *t)
		}
		p.params.Temperature = float32(*t)
	} else {
		p.params.Temperature = 1 // OpenAI's default
	}
	if v := f.TopP; v != nil {
		if *v <= 0 || *v > 1 {
			return fieldErrorf("top_p", "top_p must be in (0, 1], got %g.", *v)
		}
		p.params.TopP = float32(*v)
	}
	if v := f.TopK; v != nil {
		if *v < -1 {
			return fieldErrorf("top_k", "top_k must be -1 (disabled) or at least 0, got %d.", *v)
		}
		p.params.TopK = max(*v, 0)
	}
	for _, pen := range []struct {
		name string
		v    *float64
		dst  *float32
	}{
		{"presence_penalty", f.PresencePenalty, &p.params.PresencePenalty},
		{"frequency_penalty", f.FrequencyPenalty, &p.params.FrequencyPenalty},
	} {
		if pen.v == nil {
			continue
		}
		if *pen.v < -2 || *pen.v > 2 {
			return fieldErrorf(pen.name, "%s must be between -2 and 2, got %g.", pen.name, *pen.v)
		}
		*pen.dst = float32(*pen.v)
	}
	if v := f.RepetitionPenalty; v != nil {
		if *v <= 0 || *v > 2 {
			return fieldErrorf("repetition_penalty", "repetition_penalty must be in (0, 2], got %g.", *v)
		}
		p.params.RepetitionPenalty = float32(*v)
	}
	if f.Seed != nil {
		seed := uint64(*f.Seed)
		p.params.Seed = &seed
	}
	for i, s := range f.Stop {
		if s == "" {
			return fieldErrorf("stop", "stop[%d] is empty; stop strings must not be empty.", i)
		}
	}
	p.params.Stop = f.Stop
	p.params.IgnoreEOS = f.IgnoreEOS
	if f.StreamOptions != nil && !f.Stream {
		return fieldErrorf("stream_options", "stream_options may only be set when stream is true.")
	}
	p.stream = f.Stream
	p.includeUsage = f.StreamOptions != nil && f.StreamOptions.IncludeUsage
	return nil
}

// checkModelName accepts an empty name (the served model) or the served
// model's name.
func checkModelName(m Model, name string) error {
	if name != "" && name != m.Name() {
		return fmt.Errorf("%w: the model `%s` does not exist; this server serves `%s`", ErrModelNotFound, name, m.Name())
	}
	return nil
}

// checkPrompts validates token ids and the context budget of every prompt.
// maxSeq caps n times the number of prompts.
func checkPrompts(m Model, p *plan, param string, maxSeq int) error {
	if len(p.prompts) == 0 {
		return fieldErrorf(param, "%s must not be empty.", param)
	}
	if p.sequences() > maxSeq {
		return fieldErrorf("n", "n times the number of prompts must be at most %d.", maxSeq)
	}
	vocab, ctxLen := m.VocabSize(), m.ContextLength()
	for _, prompt := range p.prompts {
		if len(prompt) == 0 {
			return fieldErrorf(param, "A prompt must hold at least one token.")
		}
		for _, id := range prompt {
			if id < 0 || int(id) >= vocab {
				return fieldErrorf(param, "Token id %d is outside the vocabulary [0, %d).", id, vocab)
			}
		}
		want := len(prompt) + max(p.params.MaxTokens, 1)
		if want > ctxLen {
			return fmt.Errorf("%w: this model's maximum context length is %d tokens, but %d were requested (%d in the prompt, %d for the completion)",
				llm.ErrContextLength, ctxLen, want, len(prompt), max(p.params.MaxTokens, 1))
		}
	}
	return nil
}
