package batching

import "time"

// Observer receives a Batcher's events, typically to export them as metrics.
// Its methods are called from several goroutines at once, must be safe for
// concurrent use, must return quickly and must not call the Batcher.
// Embed NopObserver to implement only some of them.
type Observer interface {
	// QueueDepth reports the number of queued requests after each change.
	// It is called with the Batcher's lock held, so successive calls arrive
	// in the order the changes happened.
	QueueDepth(requests int)
	// RequestDequeued reports a request taken from the queue into an
	// execution after waiting wait in the queue.
	RequestDequeued(wait time.Duration)
	// RequestDropped reports a request removed from the queue without being
	// executed after waiting wait: reason is its context's error, or
	// ErrQueueTimeout, or ErrClosed.
	RequestDropped(wait time.Duration, reason error)
	// BatchExecuted reports one model execution of rows rows from requests
	// requests that took exec; err is its error, nil on success.
	BatchExecuted(rows, requests int, exec time.Duration, err error)
	// ResultDropped reports a request whose context ended after it left the
	// queue: its caller got the context's error and its result is discarded.
	ResultDropped()
	// Unbatchable reports, at most once per Batcher, that a batched
	// execution returned an output whose first dimension is not the batch's
	// row count; err names the output. From then on requests run one at a
	// time.
	Unbatchable(err error)
}

// NopObserver is an Observer that ignores every event.
type NopObserver struct{}

var _ Observer = NopObserver{}

// QueueDepth implements Observer.
func (NopObserver) QueueDepth(int) {}

// RequestDequeued implements Observer.
func (NopObserver) RequestDequeued(time.Duration) {}

// RequestDropped implements Observer.
func (NopObserver) RequestDropped(time.Duration, error) {}

// BatchExecuted implements Observer.
func (NopObserver) BatchExecuted(int, int, time.Duration, error) {}

// ResultDropped implements Observer.
func (NopObserver) ResultDropped() {}

// Unbatchable implements Observer.
func (NopObserver) Unbatchable(error) {}
