package engine

import (
	"context"

	"github.com/modelserver/modelserver/tensor"
)

// StreamingModel is a model that answers one request with a sequence of
// chunks (token by token, step by step) instead of one result.
//
// Stream calls emit once per chunk, in order, from the goroutine that called
// Stream. emit blocks while the consumer is slow (backpressure) and returns an
// error once the consumer is gone or ctx ends; Stream must then stop before
// computing the next chunk and return that error. Stream returns nil after
// the last chunk. Chunks are owned by the consumer once emitted.
type StreamingModel interface {
	Signature() Signature
	Stream(ctx context.Context, inputs map[string]tensor.Tensor, emit func(chunk map[string]tensor.Tensor) error) error
	Close() error
}
