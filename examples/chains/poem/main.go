// Command poem is Truss Chains' poem generator as a Go Chain: the
// entrypoint PoemGenerator asks an LLM Chainlet for one short poem per word,
// concurrently. The LLM Chainlet is modelserver serving a Phi-3 model
// directory (a ModelChainlet): it answers the Truss predict route with
// {"messages": [...], "max_tokens": N, "stream": false} by the completion
// as a JSON string.
//
//	modelserver gen-phi3 --out /tmp/phi3 && modelserver --model /tmp/phi3 --port 8002
//	poem --chainlet PoemGenerator --port 8001 --dep PhiLLM=http://127.0.0.1:8002/v1/models/model:predict
//	curl -s localhost:8001/v1/models/model:predict -d '{"words": ["bird", "plane", "superman"]}'
//
// poem gen-deploy --out deploy/poem --package ./examples/chains/poem writes
// the images and compose file; the LLM image expects the model directory at
// /app, as Dockerfile.cuda lays it out.
package main

import (
	"context"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/modelserver/modelserver/chains"
)

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// LLMInput is the LLM Chainlet's predict body.
type LLMInput struct {
	Messages  []Message `json:"messages"`
	MaxTokens int       `json:"max_tokens"`
	Stream    bool      `json:"stream"`
}

// PoemInput are PoemGenerator's arguments: {"words": [...]}.
type PoemInput struct {
	Words []string `json:"words"`
}

// PoemGenerator writes one poem per word.
type PoemGenerator struct {
	chains.Entrypoint
	LLM chains.Dep[LLMInput, string] `chains:"PhiLLM,retries=2"`
}

// maxPoemTokens bounds each poem.
const maxPoemTokens = 64

// RunRemote asks the LLM for all poems at once and returns them in the
// order of the words.
func (p *PoemGenerator) RunRemote(ctx context.Context, in PoemInput) ([]string, error) {
	poems := make([]string, len(in.Words))
	g, gctx := errgroup.WithContext(ctx)
	for i, word := range in.Words {
		g.Go(func() error {
			poem, err := p.LLM.RunRemote(gctx, LLMInput{
				Messages: []Message{
					{Role: "system", Content: "You are a poet who writes short, lighthearted, amusing poetry."},
					{Role: "user", Content: "Write a poem about " + word},
				},
				MaxTokens: maxPoemTokens,
			})
			poems[i] = strings.TrimSpace(poem)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return poems, nil
}

// PhiLLM is the LLM model Chainlet: modelserver serving the model at /app
// on a GPU.
var PhiLLM = chains.ModelChainlet{Name: "PhiLLM", Model: "/app", Accelerator: "A10G", LLM: true}

// Chainlets returns the Chain's Chainlets.
func Chainlets() []any { return []any{&PoemGenerator{}, PhiLLM} }

func main() { chains.Main(Chainlets()...) }
