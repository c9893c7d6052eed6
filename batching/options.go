package batching

import (
	"slices"
	"time"
)

// Defaults of the options.
const (
	DefaultMaxBatchSize       = 32
	DefaultMaxQueueDelay      = 1000 * time.Microsecond
	DefaultMaxQueueSize       = 1024
	DefaultPredictConcurrency = 1
)

// An Option configures a Batcher.
type Option interface {
	apply(*options)
}

type options struct {
	maxBatchSize  int64
	maxQueueDelay time.Duration
	preferred     []int64 // ascending, each in [1, maxBatchSize]
	maxQueueSize  int
	queueTimeout  time.Duration
	concurrency   int
	observer      Observer
	clock         clock
	// stageHook, for tests, runs in an execution before it looks at its
	// requests (copying false) and before it copies their inputs (true).
	stageHook func(copying bool)
}

func defaultOptions() options {
	return options{
		maxBatchSize:  DefaultMaxBatchSize,
		maxQueueDelay: DefaultMaxQueueDelay,
		maxQueueSize:  DefaultMaxQueueSize,
		concurrency:   DefaultPredictConcurrency,
		observer:      NopObserver{},
		clock:         realClock{},
	}
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithMaxBatchSize sets the most rows (along dimension 0) one execution may
// hold; a request with more rows is rejected. 0 disables batching: every
// request runs on its own, with no limit on its rows. Negative values count
// as 0. Default 32.
func WithMaxBatchSize(rows int) Option {
	return optionFunc(func(o *options) { o.maxBatchSize = int64(max(rows, 0)) })
}

// WithMaxQueueDelay sets how long a request may be held to grow its batch,
// measured from its arrival. 0 sends whatever is queued as soon as an
// execution slot is free. Negative values count as 0. Default 1000µs.
func WithMaxQueueDelay(d time.Duration) Option {
	return optionFunc(func(o *options) { o.maxQueueDelay = max(d, 0) })
}

// WithPreferredBatchSizes sets batch sizes, in rows, that are sent as soon as
// they can be formed from the oldest requests of a group, without waiting for
// the queue delay. When several can be formed, the largest is sent; a batch
// of the maximum batch size is always sent in preference. Sizes outside
// [1, max batch size] are ignored. Default none.
func WithPreferredBatchSizes(rows ...int) Option {
	return optionFunc(func(o *options) {
		o.preferred = o.preferred[:0]
		for _, r := range rows {
			if r > 0 {
				o.preferred = append(o.preferred, int64(r))
			}
		}
	})
}

// WithMaxQueueSize sets the most requests that may wait in the queue;
// Predict answers ErrQueueFull beyond it. Requests being executed do not
// count. Values below 1 count as 1. Default 1024.
func WithMaxQueueSize(requests int) Option {
	return optionFunc(func(o *options) { o.maxQueueSize = max(requests, 1) })
}

// WithQueueTimeout sets how long a request may wait in the queue before it
// fails with ErrQueueTimeout. Execution time does not count. 0 or negative
// means no timeout. Default none.
func WithQueueTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.queueTimeout = max(d, 0) })
}

// WithPredictConcurrency sets how many model executions may be in flight at
// once. Values below 1 count as 1. Default 1.
func WithPredictConcurrency(n int) Option {
	return optionFunc(func(o *options) { o.concurrency = max(n, 1) })
}

// WithObserver sets the Observer that receives the Batcher's events. nil
// means NopObserver. Default NopObserver.
func WithObserver(obs Observer) Option {
	return optionFunc(func(o *options) {
		if obs == nil {
			obs = NopObserver{}
		}
		o.observer = obs
	})
}

// normalize drops preferred sizes the batch size makes meaningless.
func (o *options) normalize() {
	p := o.preferred[:0:0]
	for _, r := range o.preferred {
		if r <= o.maxBatchSize {
			p = append(p, r)
		}
	}
	slices.Sort(p)
	o.preferred = slices.Compact(p)
}
