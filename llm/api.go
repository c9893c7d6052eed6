// Package llm generates text with decoder-only language models exported in
// the onnxruntime-genai layout (Phi-3 and its tiny generated twins), with
// continuous batching: every decode step runs all active sequences in one
// ONNX Runtime call, and new prompts are prefilled between steps.
//
// Contract:
//   - Engine is safe for concurrent use. Generate admits a request into a
//     bounded queue and returns at once; a single scheduler goroutine owns the
//     ONNX Runtime session, the KV cache and every sequence's state.
//   - Token ids are int32 (the model's vocabulary); durations are time.Duration.
//   - The caller's context is the sequence's lifetime: cancelling it removes a
//     queued request at once, or aborts a running sequence before its next
//     step and frees its KV slot.
//   - The scheduler never blocks on a slow reader: a Stream's channel holds
//     max_tokens+1 events (max_tokens defaults to the room left in the
//     context), every event the sequence can produce.
//   - Each sequence holds one KV cache slot of MaxContext tokens while it
//     runs. Slots 0..B-1 are the B decoding sequences, so one batched run
//     covers them; when one leaves, the last moves into its slot. Prompts
//     are prefilled one at a time, in chunks of PrefillChunk tokens, between
//     decode steps (GroupQueryAttention runs prompts only with batch 1).
//   - Both Phi-3 export styles run, told apart by the graph: with
//     GroupQueryAttention (the current one) each run writes the new K/V into
//     the slots in place; otherwise (the April 2024 CPU export:
//     MultiHeadAttention, position_ids, fresh presents) each run gathers its
//     rows' K/V into right-padded pasts (or, when the decode batch is
//     unchanged, reuses the last run's presents), masks the padding and
//     copies the new K/V back, in scratch buffers that grow to at most twice
//     the cache plus two slots.
//   - A seeded sequence draws from its own random source, so its tokens do
//     not depend on what else is in the batch.
package llm

import (
	"context"
	"errors"
	"time"
)

// Errors produced by the engine. Transports map them to status codes.
var (
	// ErrQueueFull: the admission queue is at capacity (HTTP 429).
	ErrQueueFull = errors.New("llm: admission queue is full")
	// ErrContextLength: prompt tokens plus max_tokens exceed the model's
	// context length (HTTP 400).
	ErrContextLength = errors.New("llm: prompt and max_tokens exceed the context length")
	// ErrInvalidParams: a sampling parameter is out of range (HTTP 400).
	ErrInvalidParams = errors.New("llm: invalid sampling parameters")
	// ErrClosed: the engine is shut down (HTTP 503).
	ErrClosed = errors.New("llm: engine closed")
)

// FinishReason says why a sequence ended.
type FinishReason string

// Finish reasons. Stop and Length carry OpenAI's meaning.
const (
	FinishStop      FinishReason = "stop"      // an eos/stop token id or a stop string
	FinishLength    FinishReason = "length"    // max_tokens or the context length
	FinishCancelled FinishReason = "cancelled" // the caller's context ended
	FinishError     FinishReason = "error"     // the runtime failed; Event.Err says why
)

// SamplingParams control one sequence's token choice. The zero value is
// greedy decoding up to the context length, stopping at the model's eos ids.
type SamplingParams struct {
	// MaxTokens caps generated tokens; 0 means up to the context length.
	MaxTokens int
	// Temperature 0 selects greedy decoding (argmax); otherwise logits are
	// divided by it before top-k / top-p filtering.
	Temperature float32
	// TopK keeps the k most likely tokens; 0 disables it.
	TopK int
	// TopP keeps the smallest set whose probability reaches p; 0 or 1
	// disables it.
	TopP float32
	// RepetitionPenalty (HF semantics, over prompt and output) is disabled at
	// 0 or 1.
	RepetitionPenalty float32
	// PresencePenalty and FrequencyPenalty (OpenAI semantics, over output
	// tokens) are disabled at 0.
	PresencePenalty  float32
	FrequencyPenalty float32
	// Seed, when set, makes sampling reproducible for this sequence whatever
	// else shares its batch.
	Seed *uint64
	// StopTokenIDs end the sequence in addition to the model's eos ids.
	StopTokenIDs []int32
	// IgnoreEOS keeps generating past the model's eos ids.
	IgnoreEOS bool
	// Stop strings end the sequence when they appear in the output text,
	// also across token boundaries; the matched string is not emitted.
	Stop []string
	// Logprobs asks for each chosen token's log-probability and TopLogprobs
	// (0..20) alternatives, under the distribution the token was drawn from
	// (after penalties and temperature; greedy counts as temperature 1),
	// before top-k / top-p.
	Logprobs    bool
	TopLogprobs int
}

// Request is one sequence to generate.
type Request struct {
	// Prompt is the tokenized prompt, special tokens included.
	Prompt []int32
	Params SamplingParams
}

// TokenLogprob is one candidate token and its log-probability.
type TokenLogprob struct {
	Token   int32
	Text    string
	Logprob float32
}

// Usage counts tokens as OpenAI reports them.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
}

// Timing is where a sequence's time went.
type Timing struct {
	Queued     time.Duration // admission to prefill start
	FirstToken time.Duration // admission to the first generated token
	Total      time.Duration // admission to finish
}

// Event is one step of a sequence's output. Every generated token produces
// exactly one event; the last event has Finish set and carries Usage and
// Timing.
type Event struct {
	// Token is the generated token id, or -1 on a final event that carries
	// no token (cancellation, error, a flush of held-back text).
	Token int32
	// Text is the output text that became final with this event. It is empty
	// while a multi-byte character is incomplete or while the text could
	// still be the start of a stop string.
	Text        string
	Logprob     float32
	TopLogprobs []TokenLogprob
	Finish      FinishReason
	Err         error
	Usage       Usage
	Timing      Timing
}

// Stats is a snapshot of the scheduler's load, for metrics. The counters
// below the gauges only grow from Open on.
type Stats struct {
	Running   int // sequences holding a KV slot
	Waiting   int // admitted, not yet prefilled
	SlotsUsed int
	Slots     int

	PrefillTokens int64 // prompt tokens run through the model
	DecodeSteps   int64 // batched decode runs
	DecodeTokens  int64 // tokens those runs generated (their rows)
	// StepTime is the wall time of all decode steps (runtime call,
	// sampling, events); RunTime the part spent inside ONNX Runtime.
	// 1 - RunTime/StepTime is the engine's own share of a step.
	StepTime time.Duration
	RunTime  time.Duration
}

// Generator is what transports need from an engine.
type Generator interface {
	// Generate admits req. Errors are ErrQueueFull, ErrContextLength,
	// ErrInvalidParams or ErrClosed. The stream ends when ctx ends.
	Generate(ctx context.Context, req Request) (*Stream, error)
	Stats() Stats
}

// Stream delivers one sequence's events in order. Exactly one goroutine
// should read it.
type Stream struct {
	events <-chan Event
}

// Events returns the channel of events; it is closed after the final event.
func (s *Stream) Events() <-chan Event { return s.events }
