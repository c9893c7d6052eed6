package openai

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/modelserver/modelserver/llm"
)

func (a *API) handleCompletions(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	m, req, ok := readRequest[completionRequest](a, w, r)
	if !ok {
		return
	}
	p, err := a.completionPlan(m, req)
	if err != nil {
		a.writeError(w, err)
		return
	}
	a.answer(w, r, m, p, newCompletionShape(m.Name(), p), start)
}

// completionPlan validates a completions request and tokenizes its prompts
// (text prompts get the tokenizer's special tokens, token prompts are used
// as given).
func (a *API) completionPlan(m Model, req *completionRequest) (*plan, error) {
	p := &plan{}
	if err := validateSampling(m, &req.samplingFields, p, a.opts.MaxSequencesPerRequest); err != nil {
		return nil, err
	}
	if req.Echo {
		return nil, fieldErrorf("echo", "echo is not supported.")
	}
	if req.Suffix != "" {
		return nil, fieldErrorf("suffix", "suffix is not supported.")
	}
	if req.Logprobs != nil {
		if *req.Logprobs < 0 || *req.Logprobs > maxTopLogprobs {
			return nil, fieldErrorf("logprobs", "logprobs must be between 0 and %d, got %d.", maxTopLogprobs, *req.Logprobs)
		}
		p.logprobs = true
		p.params.Logprobs = true
		p.params.TopLogprobs = *req.Logprobs
	}
	switch {
	case req.Prompt.Tokens != nil:
		p.prompts = req.Prompt.Tokens
	default:
		for _, text := range req.Prompt.Texts {
			p.prompts = append(p.prompts, m.Tokenize(text, true))
		}
	}
	return p, checkPrompts(m, p, "prompt", a.opts.MaxSequencesPerRequest)
}

// Completion objects (OpenAI's text_completion, streamed and not).
type completion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	// Usage is a usage object on the whole answer and on the streamed usage
	// chunk, null on other chunks when include_usage is set, else absent.
	Usage json.RawMessage `json:"usage,omitempty"`
}

type completionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *completionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
}

type completionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

func (l *completionLogprobs) add(lp tokenLogprob) {
	top := make(map[string]float64, len(lp.top))
	for _, t := range lp.top {
		top[t.Text] = finiteLogprob(t.Logprob)
	}
	l.Tokens = append(l.Tokens, lp.token)
	l.TokenLogprobs = append(l.TokenLogprobs, lp.logprob)
	l.TopLogprobs = append(l.TopLogprobs, top)
	l.TextOffset = append(l.TextOffset, lp.offset)
}

type completionShape struct {
	id, model    string
	created      int64
	includeUsage bool
	logprobs     bool
}

func newCompletionShape(model string, p *plan) *completionShape {
	return &completionShape{id: responseID("cmpl-"), model: model, created: time.Now().Unix(), includeUsage: p.includeUsage, logprobs: p.logprobs}
}

func (s *completionShape) chunk(c completionChoice) completion {
	out := completion{ID: s.id, Object: "text_completion", Created: s.created, Model: s.model, Choices: []completionChoice{c}}
	if s.includeUsage {
		out.Usage = json.RawMessage("null")
	}
	return out
}

func (s *completionShape) opening(int) any { return nil }

func (s *completionShape) delta(i int, text string, lp *tokenLogprob) any {
	c := completionChoice{Index: i, Text: text}
	if lp != nil {
		c.Logprobs = &completionLogprobs{}
		c.Logprobs.add(*lp)
	}
	return s.chunk(c)
}

func (s *completionShape) finish(i int, reason llm.FinishReason) any {
	r := string(reason)
	return s.chunk(completionChoice{Index: i, FinishReason: &r})
}

func (s *completionShape) usageChunk(u usage) any {
	body, _ := marshalJSON(u) // a struct of ints always marshals
	return completion{ID: s.id, Object: "text_completion", Created: s.created, Model: s.model, Choices: []completionChoice{}, Usage: body}
}

func (s *completionShape) response(choices []choiceResult, u usage) any {
	body, _ := marshalJSON(u) // a struct of ints always marshals
	out := completion{ID: s.id, Object: "text_completion", Created: s.created, Model: s.model, Choices: make([]completionChoice, len(choices)), Usage: body}
	for i := range choices {
		c := &choices[i]
		reason := string(c.finish)
		out.Choices[i] = completionChoice{Index: i, Text: c.text.String(), FinishReason: &reason}
		if s.logprobs {
			lps := &completionLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
			for _, lp := range c.logprobs {
				lps.add(lp)
			}
			out.Choices[i].Logprobs = lps
		}
	}
	return out
}
