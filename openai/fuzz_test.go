package openai

import (
	"errors"
	"testing"
)

// FuzzRequestBodies feeds arbitrary bodies through the predict planner,
// which parses chat and completions bodies with the routes' own rules:
// it must never panic, and every failure must be a client error.
func FuzzRequestBodies(f *testing.F) {
	for _, seed := range []string{
		`{"messages":[{"role":"user","content":"hi"}],"n":2,"stop":["a"],"max_tokens":3}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"}]}]}`,
		`{"prompt":"x","logprobs":2,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"prompt":[[1,2],[3]],"n":2,"seed":-5,"top_k":-1}`,
		`{"prompt":[1,2,300],"temperature":"x"}`,
		`{"prompt":["a",1]}`,
		`{"stop":"x","prompt":null}`,
		`[]`, `null`, ``, `{"messages":{}}`,
	} {
		f.Add([]byte(seed))
	}
	api := New(Options{})
	m := newFakeModel("x")
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := api.predictPlan(m, body)
		if err != nil {
			if apiErrorFor(err).Status >= 500 {
				t.Fatalf("predictPlan(%q) = %v, a server error", body, err)
			}
			if !errors.Is(err, ErrInvalidRequest) && apiErrorFor(err).Status == 400 && apiErrorFor(err).Code != codeContextLength && !errors.Is(err, ErrPromptRejected) {
				t.Fatalf("predictPlan(%q) = %v, not a FieldError", body, err)
			}
			return
		}
		if p.sequences() < 1 || p.sequences() > DefaultMaxSequencesPerRequest {
			t.Fatalf("predictPlan(%q) runs %d sequences", body, p.sequences())
		}
		for i := range p.sequences() {
			if len(p.request(i).Prompt) == 0 {
				t.Fatalf("predictPlan(%q) sequence %d has an empty prompt", body, i)
			}
		}
	})
}
