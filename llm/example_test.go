package llm_test

import (
	"context"
	"fmt"
	"log"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/llm"
	"github.com/modelserver/modelserver/llm/chattemplate"
)

// A chat completion: render the prompt with the model's template, tokenize
// it, and print the text as it streams.
func ExampleEngine_Generate() {
	if err := engine.InitONNXRuntime("/usr/local/lib/libonnxruntime.so"); err != nil {
		log.Fatal(err)
	}
	e, err := llm.Open("/models/phi3-mini", llm.Options{MaxSequences: 8})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	text, err := e.ChatTemplate().Render(chattemplate.Input{
		Messages:            []chattemplate.Message{{Role: "user", Content: "Name a prime number."}},
		AddGenerationPrompt: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	s, err := e.Generate(context.Background(), llm.Request{
		Prompt: e.Tokenizer().Encode(text, true),
		Params: llm.SamplingParams{MaxTokens: 64, Temperature: 0.7, TopP: 0.9, Stop: []string{"\n\n"}},
	})
	if err != nil {
		log.Fatal(err) // ErrQueueFull → 429, ErrContextLength / ErrInvalidParams → 400
	}
	for ev := range s.Events() {
		fmt.Print(ev.Text)
		if ev.Finish != "" {
			fmt.Printf("\n[%s: %d+%d tokens, first token after %v]\n", ev.Finish,
				ev.Usage.PromptTokens, ev.Usage.CompletionTokens, ev.Timing.FirstToken)
		}
	}
}
