package batching

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/tensor"
)

// StreamLimiter applies predict_concurrency to a streaming model: at most
// concurrency streams produce at once, each holding its slot until its
// producer returns (as Truss holds its predict semaphore until a generator
// is drained), and at most queueSize more wait for a slot; further streams
// get ErrQueueFull at once. Streams are not batched. A waiting stream whose
// context ends leaves the queue with ctx.Err(). Safe for concurrent use.
type StreamLimiter struct {
	model      engine.StreamingModel
	slots      chan struct{}
	waiting    atomic.Int64
	maxWaiting int64
	obs        Observer
}

// NewStreamLimiter wraps model; concurrency and queueSize below 1 are
// treated as 1 and 0.
func NewStreamLimiter(model engine.StreamingModel, concurrency, queueSize int, obs Observer) *StreamLimiter {
	if obs == nil {
		obs = NopObserver{}
	}
	return &StreamLimiter{model: model, slots: make(chan struct{}, max(concurrency, 1)), maxWaiting: int64(max(queueSize, 0)), obs: obs}
}

// Stream runs model.Stream once a slot is free; see engine.StreamingModel.
// A RequestTracer in ctx sees the wait for a slot as the queue and the
// producer's run as the execution (rows 0: streams are not batched).
func (l *StreamLimiter) Stream(ctx context.Context, inputs map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) error {
	tracer := RequestTracerFrom(ctx)
	enqueued := time.Now()
	select {
	case l.slots <- struct{}{}:
	default:
		if l.waiting.Add(1) > l.maxWaiting {
			l.waiting.Add(-1)
			return ErrQueueFull
		}
		l.obs.QueueDepth(int(l.waiting.Load()))
		select {
		case l.slots <- struct{}{}:
			l.obs.QueueDepth(int(l.waiting.Add(-1)))
		case <-ctx.Done():
			l.obs.QueueDepth(int(l.waiting.Add(-1)))
			if tracer != nil {
				tracer.LeftQueue(ctx, enqueued, time.Now(), ctx.Err())
			}
			return ctx.Err()
		}
	}
	defer func() { <-l.slots }()
	if tracer == nil {
		return l.model.Stream(ctx, inputs, emit)
	}
	start := time.Now()
	tracer.LeftQueue(ctx, enqueued, start, nil)
	err := l.model.Stream(ctx, inputs, emit)
	tracer.Executed(ctx, start, time.Now(), 0, 1, err)
	return err
}
