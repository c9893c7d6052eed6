package batching

import (
	"context"
	"time"
)

// RequestTracer receives the events of one request, where an Observer sees
// those of the whole Batcher: transports put one in the request's context
// (WithRequestTracer) to log a request's queue time and batch size and to
// record tracing spans. Its methods are called from the Batcher's
// goroutines, possibly after Predict has returned (a caller that left), so
// they must be safe for concurrent use and return quickly. ctx is the
// context the request was made with.
type RequestTracer interface {
	// LeftQueue reports a request that waited in the queue from enqueued
	// to left; err is nil when it went into an execution, else why it was
	// dropped (its context's error, ErrQueueTimeout or ErrClosed).
	LeftQueue(ctx context.Context, enqueued, left time.Time, err error)
	// Executed reports the model execution that ran the request: rows
	// rows from requests requests, from start to end; err is its error.
	Executed(ctx context.Context, start, end time.Time, rows, requests int, err error)
}

type requestTracerKey struct{}

// WithRequestTracer returns ctx carrying t; Predict and Stream report the
// request's events to it.
func WithRequestTracer(ctx context.Context, t RequestTracer) context.Context {
	return context.WithValue(ctx, requestTracerKey{}, t)
}

// RequestTracerFrom returns the RequestTracer ctx carries, or nil. Other
// schedulers (streams, LLM engines) use it to report the same events.
func RequestTracerFrom(ctx context.Context) RequestTracer {
	t, _ := ctx.Value(requestTracerKey{}).(RequestTracer)
	return t
}

// traceLeftQueue reports r leaving the queue at left to r's tracer.
func traceLeftQueue(r *request, left time.Time, err error) {
	if r.tracer != nil {
		r.tracer.LeftQueue(r.ctx, r.enqueued, left, err)
	}
}

// traceExecuted reports r's execution to r's tracer.
func traceExecuted(r *request, start, end time.Time, rows, requests int, err error) {
	if r.tracer != nil {
		r.tracer.Executed(r.ctx, start, end, rows, requests, err)
	}
}
