package llm

import (
	"context"
	"log/slog"
	"sync"

	"github.com/modelserver/modelserver/engine"
)

// Options configure Open. The zero value takes every default.
type Options struct {
	// MaxSequences is the number of sequences decoded together, each with
	// its own KV cache slot. Default: 16, or as many as MaxKVCacheBytes
	// holds when that is fewer (a big model's full-length slots).
	MaxSequences int
	// MaxContext is the most tokens (prompt and output) one sequence may
	// hold, the length of each KV slot. Default and upper bound: the
	// model's context_length, shortened when MaxSequences is also left
	// at 0 and one sequence of it would not fit MaxKVCacheBytes.
	MaxContext int
	// QueueSize is the most requests waiting for a slot; beyond it
	// Generate returns ErrQueueFull. Default 256.
	QueueSize int
	// PrefillChunk is the most prompt tokens run in one prefill step; longer
	// prompts are prefilled over several steps, with decode steps of the
	// running sequences in between. Default 512.
	PrefillChunk int
	// MaxKVCacheBytes caps the KV cache (MaxSequences × MaxContext tokens,
	// allocated at Open); Open fails with a hint when it would be larger.
	// For exports without GroupQueryAttention (the 2024 CPU ones) it also
	// covers the run scratch, which grows with use up to twice the cache
	// plus two slots. Default 8 GiB.
	MaxKVCacheBytes int64
	// ONNX sets threads and the execution provider of the session.
	ONNX engine.ONNXOptions
	// Logger receives start-up information. Default slog.Default().
	Logger *slog.Logger
}

// Defaults for Options.
const (
	DefaultMaxSequences    = 16
	DefaultQueueSize       = 256
	DefaultPrefillChunk    = 512
	DefaultMaxKVCacheBytes = 8 << 30
)

func (o Options) withDefaults(contextLength int) Options {
	if o.MaxContext <= 0 || o.MaxContext > contextLength {
		o.MaxContext = contextLength
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.PrefillChunk <= 0 {
		o.PrefillChunk = DefaultPrefillChunk
	}
	o.PrefillChunk = min(o.PrefillChunk, o.MaxContext)
	if o.MaxKVCacheBytes <= 0 {
		o.MaxKVCacheBytes = DefaultMaxKVCacheBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Generate implements Generator: it validates req and queues it. Events
// arrive on the returned stream until the final one; cancelling ctx ends the
// sequence with FinishCancelled.
func (e *Engine) Generate(ctx context.Context, req Request) (*Stream, error) {
	return e.sched.generate(ctx, req)
}

// Stats implements Generator.
func (e *Engine) Stats() Stats { return e.sched.snapshot() }

var _ Generator = (*Engine)(nil)

// Engine generates text with one model. It is safe for concurrent use; see
// the package documentation for the contract.
type Engine struct {
	sched     *scheduler
	dec       decoder // nil in tests with a fake that needs no closing
	closeOnce sync.Once
	closeErr  error
	model     modelFiles
	name      string
	ctxLen    int
}

// ModelName is the model directory's base name.
func (e *Engine) ModelName() string { return e.name }

// ContextLength is the most tokens (prompt and output) a sequence may hold.
func (e *Engine) ContextLength() int { return e.ctxLen }

// Close ends every sequence (queued and running streams get a final event
// with FinishCancelled and ErrClosed), stops the scheduler and releases the
// runtime session. Later Generate calls return ErrClosed.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.sched.shutdown()
		if e.dec != nil {
			e.closeErr = e.dec.close()
		}
	})
	return e.closeErr
}
