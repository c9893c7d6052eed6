package openai

import (
	"context"

	"github.com/modelserver/modelserver/llm"
)

// Model is what the API needs of a served language model. Implementations
// must be safe for concurrent use.
type Model interface {
	// Name is the served model name: /v1/models lists it and requests that
	// name another model get 404.
	Name() string
	// ContextLength is the most tokens a sequence (prompt and output) may
	// hold.
	ContextLength() int
	// VocabSize bounds token ids a request may send (0 <= id < VocabSize).
	VocabSize() int
	// Generate admits one sequence; see llm.Generator. The channel is
	// closed after the event that has Finish set, or soon after ctx ends.
	Generate(ctx context.Context, req llm.Request) (<-chan llm.Event, error)
	// Stats is the scheduler's load, for metrics and tests.
	Stats() llm.Stats
	// Tokenize encodes text; addSpecial adds the tokenizer's BOS/EOS
	// template (true for raw prompts, false for rendered chat prompts).
	Tokenize(text string, addSpecial bool) []int32
	// Detokenize decodes ids, dropping special tokens when skipSpecial.
	Detokenize(ids []int32, skipSpecial bool) string
	// TokenText is one token's text as logprobs report it.
	TokenText(id int32) string
	// RenderChat applies the chat template. Errors the template raises on
	// purpose wrap ErrPromptRejected.
	RenderChat(messages []Message, addGenerationPrompt bool) (string, error)
}

// Message is one chat message after parsing.
type Message struct {
	Role    string // system, user or assistant
	Content string
}
