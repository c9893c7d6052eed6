package batching

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/tensor"
)

// Errors returned by Predict besides the context's error and the model's.
var (
	// ErrQueueFull: the queue held the maximum number of requests; the
	// request was rejected without waiting.
	ErrQueueFull = errors.New("batching: queue full")
	// ErrQueueTimeout: the request waited in the queue for the queue
	// timeout and was removed without being executed.
	ErrQueueTimeout = errors.New("batching: timed out waiting in the queue")
	// ErrClosed: the Batcher was closed before the request was executed.
	ErrClosed = errors.New("batching: closed")
)

// Batcher queues requests for one model, batches them and runs them with
// bounded concurrency. See the package documentation for its contract.
type Batcher struct {
	model engine.Model
	sig   engine.Signature
	opts  options
	obs   Observer
	clock clock

	// batching is set while requests are concatenated; it is cleared for
	// good when the model turns out to mix rows.
	batching atomic.Bool

	wake      chan struct{}  // 1-buffered; coalesces wake-ups of the scheduler
	done      chan struct{}  // closed when the scheduler has returned
	execs     sync.WaitGroup // executions in flight
	closeOnce sync.Once

	mu         sync.Mutex // guards the following and the Batcher-guarded fields of request and batch
	closed     bool
	groups     map[string]*group // queued batchable requests by trailing input shapes
	solo       group             // queued requests that run on their own
	depth      int               // queued requests
	inFlight   int               // executions holding a concurrency slot
	seq        uint64            // arrivals so far
	unbatchErr bool              // Unbatchable was reported
	// The scheduler's state, for tests (see export_test.go): signals
	// counts wake-ups sent, seen the count its last decision took into
	// account; idle is set while it sleeps, until waitUntil if not zero.
	signals, seen uint64
	idle          bool
	waitUntil     time.Time
}

// result is the single answer to a request.
type result struct {
	outputs map[string]tensor.Tensor
	err     error
}

type reqState uint8

const (
	queued     reqState = iota
	dispatched          // taken into a batch; inputs not copied yet
	executing           // inputs copied; the caller's tensors are no longer read
	abandoned           // the caller left after the request was dispatched
	removed             // left the queue without being executed
)

// request is one Predict call.
type request struct {
	// ctx travels with the queued request so that cancellation reaches the
	// queue and the execution.
	ctx    context.Context //nolint:containedctx // see above
	inputs map[string]tensor.Tensor
	reply  chan result // 1-buffered: the one answer never blocks its sender
	rows   int64
	key    []byte // trailing shapes of all inputs, when batched
	keyBuf [32]byte
	solo   bool          // runs on its own
	tracer RequestTracer // from ctx; nil when none

	// Guarded by Batcher.mu.
	state      reqState
	seq        uint64
	enqueued   time.Time
	group      *group
	prev, next *request
	batch      *batch
}

// group is a FIFO of queued requests that may share a batch.
type group struct {
	key        string
	head, tail *request
}

// batch is one model execution.
type batch struct {
	reqs []*request
	solo bool // not concatenated: a single request of an unbatched model

	// Guarded by Batcher.mu.
	staging bool          // inputs are being copied
	staged  chan struct{} // closed when copying ends; made by a caller that waits for it
	live    int           // executing requests whose callers still wait
	cancel  context.CancelFunc
}

// New returns a Batcher for model and starts its scheduler. The Batcher does
// not own model: close the model after Close returns.
func New(model engine.Model, opts ...Option) *Batcher {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	o.normalize()
	b := &Batcher{
		model:  model,
		sig:    model.Signature(),
		opts:   o,
		obs:    o.observer,
		clock:  o.clock,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		groups: make(map[string]*group),
	}
	b.batching.Store(o.maxBatchSize > 0 && batchable(b.sig))
	go b.schedule()
	return b
}

// Predict validates inputs against the model's signature (errors wrap
// engine.ErrInvalidInput), queues the request and waits for its result. It
// returns ErrQueueFull at once when the queue is full, ErrQueueTimeout when
// the request waited too long in the queue, ErrClosed after Close, ctx.Err()
// as soon as ctx ends, and otherwise the model's outputs or error. It never
// blocks longer than the model execution its request is part of, or than ctx.
func (b *Batcher) Predict(ctx context.Context, inputs map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &request{ctx: ctx, inputs: inputs, reply: make(chan result, 1), tracer: RequestTracerFrom(ctx)}
	if err := b.inspect(r, b.batching.Load()); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	if b.depth >= b.opts.maxQueueSize {
		b.mu.Unlock()
		return nil, ErrQueueFull
	}
	b.enqueueLocked(r)
	b.mu.Unlock()

	var timeout <-chan time.Time
	if b.opts.queueTimeout > 0 {
		t := b.clock.NewTimer(r.enqueued.Add(b.opts.queueTimeout))
		defer t.Stop()
		timeout = t.C()
	}
	for {
		select {
		case res := <-r.reply:
			return res.outputs, res.err
		case <-ctx.Done():
			b.abandon(r, ctx.Err())
			return nil, ctx.Err()
		case <-timeout:
			if b.dropIfQueued(r, ErrQueueTimeout) {
				return nil, ErrQueueTimeout
			}
			timeout = nil // already executing: the timeout no longer applies
		}
	}
}

// Close stops accepting requests, fails the queued ones with ErrClosed and
// waits for the executions in flight to end (it does not cancel them). It is
// idempotent; every call returns once all of the Batcher's goroutines have
// ended. It does not close the model.
func (b *Batcher) Close() {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		now := b.clock.Now()
		var dropped []*request
		for _, g := range b.queuesLocked() {
			for g.head != nil {
				r := g.head
				b.removeLocked(r, now)
				dropped = append(dropped, r)
				r.reply <- result{err: ErrClosed}
			}
		}
		b.signalLocked()
		b.mu.Unlock()
		for _, r := range dropped {
			b.obs.RequestDropped(now.Sub(r.enqueued), ErrClosed)
			traceLeftQueue(r, now, ErrClosed)
		}
	})
	<-b.done
	b.execs.Wait()
}

// queuesLocked lists every non-empty queue.
func (b *Batcher) queuesLocked() []*group {
	qs := make([]*group, 0, len(b.groups)+1)
	if b.solo.head != nil {
		qs = append(qs, &b.solo)
	}
	for _, g := range b.groups {
		qs = append(qs, g)
	}
	return qs
}

func (b *Batcher) signalLocked() {
	b.signals++
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *Batcher) enqueueLocked(r *request) {
	b.seq++
	r.seq, r.enqueued, r.state = b.seq, b.clock.Now(), queued
	g := &b.solo
	if !r.solo && b.batching.Load() {
		g = b.groups[string(r.key)]
		if g == nil {
			g = &group{key: string(r.key)}
			b.groups[g.key] = g
		}
	}
	r.group, r.prev = g, g.tail
	if g.tail != nil {
		g.tail.next = r
	} else {
		g.head = r
	}
	g.tail = r
	b.depth++
	b.obs.QueueDepth(b.depth)
	b.signalLocked()
}

// unlinkLocked takes r out of its queue.
func (b *Batcher) unlinkLocked(r *request) {
	g := r.group
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		g.head = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		g.tail = r.prev
	}
	r.prev, r.next, r.group = nil, nil, nil
	if g.head == nil && g != &b.solo {
		delete(b.groups, g.key)
	}
}

// removeLocked drops queued r from the queue for good and returns how long
// it waited.
func (b *Batcher) removeLocked(r *request, now time.Time) time.Duration {
	b.unlinkLocked(r)
	r.state = removed
	b.depth--
	b.obs.QueueDepth(b.depth)
	b.signalLocked() // the batch it was part of may be ready now
	return now.Sub(r.enqueued)
}

// dropIfQueued removes r from the queue if it is still there.
func (b *Batcher) dropIfQueued(r *request, reason error) bool {
	b.mu.Lock()
	if r.state != queued {
		b.mu.Unlock()
		return false
	}
	now := b.clock.Now()
	wait := b.removeLocked(r, now)
	b.mu.Unlock()
	b.obs.RequestDropped(wait, reason)
	traceLeftQueue(r, now, reason)
	return true
}

// abandon handles a caller that left: a queued request is removed, a
// dispatched one is left out of its batch, and an executing one stops
// counting for its batch, whose run is cancelled when no caller is left. If
// r's inputs are being copied, abandon waits for the copy to end so that
// they are not read after Predict returns.
func (b *Batcher) abandon(r *request, reason error) {
	if b.dropIfQueued(r, reason) {
		return
	}
	b.mu.Lock()
	for r.state == dispatched && r.batch.staging {
		bt := r.batch
		if bt.staged == nil {
			bt.staged = make(chan struct{})
		}
		staged := bt.staged
		b.mu.Unlock()
		<-staged
		b.mu.Lock()
	}
	switch r.state {
	case dispatched:
		r.state = abandoned
	case executing:
		r.state = abandoned
		bt := r.batch
		if bt.live--; bt.live == 0 && bt.cancel != nil {
			bt.cancel()
		}
	default: // removed by Close, which answered it
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	b.obs.ResultDropped()
}

// schedule is the scheduler goroutine: whenever an execution slot is free it
// starts the batch of the oldest request that is ready, and otherwise sleeps
// until a request arrives, an execution ends or the oldest queued request's
// delay runs out.
func (b *Batcher) schedule() {
	defer close(b.done)
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return
		}
		b.idle, b.seen = false, b.signals
		now := b.clock.Now()
		bt, deadline := b.nextLocked(now)
		var t timer
		var expired <-chan time.Time
		if bt == nil {
			b.idle, b.waitUntil = true, deadline
			if !deadline.IsZero() {
				t = b.clock.NewTimer(deadline)
				expired = t.C()
			}
		}
		b.mu.Unlock()
		if bt != nil {
			for _, r := range bt.reqs {
				b.obs.RequestDequeued(now.Sub(r.enqueued))
				traceLeftQueue(r, now, nil)
			}
			b.execs.Add(1)
			go b.execute(bt)
			continue
		}
		select {
		case <-b.wake:
		case <-expired:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// nextLocked takes the next batch off the queue, if a slot is free and a
// batch is ready. Otherwise it returns when the scheduler must look again
// (zero: only when woken).
func (b *Batcher) nextLocked(now time.Time) (*batch, time.Time) {
	if b.inFlight >= b.opts.concurrency || b.depth == 0 {
		return nil, time.Time{}
	}
	batching := b.batching.Load()
	var (
		best     *group
		bestN    int
		deadline time.Time
	)
	consider := func(g *group) {
		if best != nil && best.head.seq < g.head.seq {
			return // an older ready request goes first
		}
		if g == &b.solo || !batching {
			best, bestN = g, 1
			return
		}
		n, ready := b.planLocked(g, now)
		if ready {
			best, bestN = g, n
			return
		}
		if d := g.head.enqueued.Add(b.opts.maxQueueDelay); deadline.IsZero() || d.Before(deadline) {
			deadline = d
		}
	}
	if b.solo.head != nil {
		consider(&b.solo)
	}
	for _, g := range b.groups {
		consider(g)
	}
	if best == nil {
		return nil, deadline
	}
	bt := &batch{reqs: make([]*request, 0, bestN), solo: best == &b.solo || !batching}
	for range bestN {
		r := best.head
		b.unlinkLocked(r)
		r.state, r.batch = dispatched, bt
		bt.reqs = append(bt.reqs, r)
	}
	b.depth -= bestN
	b.obs.QueueDepth(b.depth)
	b.inFlight++
	return bt, time.Time{}
}

// planLocked decides how many requests from the head of g form its next
// batch and whether that batch must go now: when it holds the maximum batch
// size, else when its largest prefix of a preferred size exists, else when
// the next request does not fit, else when the head has waited the delay.
func (b *Batcher) planLocked(g *group, now time.Time) (n int, ready bool) {
	limit := b.opts.maxBatchSize
	var rows int64
	preferred, full := 0, false
	for r := g.head; r != nil; r = r.next {
		if rows+r.rows > limit {
			full = true
			break
		}
		rows += r.rows
		n++
		if _, ok := slices.BinarySearch(b.opts.preferred, rows); ok {
			preferred = n
		}
	}
	switch {
	case rows == limit:
		return n, true
	case preferred > 0:
		return preferred, true
	case full:
		return n, true
	}
	return n, now.Sub(g.head.enqueued) >= b.opts.maxQueueDelay
}

// release frees bt's execution slot.
func (b *Batcher) release() {
	b.mu.Lock()
	b.inFlight--
	b.signalLocked()
	b.mu.Unlock()
}

// execute copies bt's inputs, runs the model, and answers every request
// whose caller still waits.
func (b *Batcher) execute(bt *batch) {
	defer b.execs.Done()
	if b.opts.stageHook != nil {
		b.opts.stageHook(false)
	}
	b.mu.Lock()
	live := bt.reqs[:0]
	var rows int64
	for _, r := range bt.reqs {
		if r.state == dispatched {
			live = append(live, r)
			rows += r.rows
		}
	}
	bt.reqs = live
	bt.staging = true
	b.mu.Unlock()
	if len(live) == 0 {
		b.release()
		return
	}

	if b.opts.stageHook != nil {
		b.opts.stageHook(true)
	}
	inputs := stage(b.sig.Inputs, live, rows)

	b.mu.Lock()
	bt.staging = false
	if bt.staged != nil {
		close(bt.staged)
	}
	for _, r := range live {
		r.state = executing
	}
	bt.live = len(live)
	ctx := live[0].ctx
	if len(live) > 1 {
		ctx, bt.cancel = context.WithCancel(context.WithoutCancel(ctx))
	}
	b.mu.Unlock()
	if bt.cancel != nil {
		defer bt.cancel()
	}

	start := b.clock.Now()
	out, err := b.run(ctx, inputs)
	end := b.clock.Now()
	b.obs.BatchExecuted(int(rows), len(live), end.Sub(start), err)
	for _, r := range live {
		traceExecuted(r, start, end, int(rows), len(live), err)
	}
	if err == nil && !bt.solo {
		if mixErr := rowsMismatch(out, rows); mixErr != nil {
			b.markUnbatchable(mixErr)
			if len(live) > 1 {
				b.runEach(live, inputs)
				b.release()
				return
			}
		}
	}
	b.release()
	switch {
	case err != nil:
		for _, r := range live {
			r.reply <- result{err: err}
		}
	case len(live) == 1:
		live[0].reply <- result{outputs: out}
	default:
		parts, err := split(out, live)
		for i, r := range live {
			if err != nil {
				r.reply <- result{err: err}
			} else {
				r.reply <- result{outputs: parts[i]}
			}
		}
	}
}

// runEach runs the requests of a batch the model could not run together one
// at a time, from the batch's staged inputs.
func (b *Batcher) runEach(reqs []*request, staged map[string]tensor.Tensor) {
	var off int64
	for _, r := range reqs {
		first := off
		off += r.rows
		if r.ctx.Err() != nil {
			r.reply <- result{err: r.ctx.Err()} // its caller has left
			continue
		}
		inputs := make(map[string]tensor.Tensor, len(staged))
		for name, t := range staged {
			rowBytes := int64(len(t.Data)) / t.Shape[0]
			shape := append([]int64(nil), t.Shape...)
			shape[0] = r.rows
			inputs[name] = tensor.Tensor{DType: t.DType, Shape: shape, Data: t.Data[first*rowBytes : off*rowBytes : off*rowBytes]}
		}
		start := b.clock.Now()
		out, err := b.run(r.ctx, inputs)
		end := b.clock.Now()
		b.obs.BatchExecuted(int(r.rows), 1, end.Sub(start), err)
		traceExecuted(r, start, end, int(r.rows), 1, err)
		r.reply <- result{outputs: out, err: err}
	}
}

// run calls the model, turning a panic into an error.
func (b *Batcher) run(ctx context.Context, inputs map[string]tensor.Tensor) (out map[string]tensor.Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("%w: model panicked: %v", engine.ErrRuntime, p)
		}
	}()
	return b.model.Run(ctx, inputs)
}

// markUnbatchable turns batching off for good and reports it once.
func (b *Batcher) markUnbatchable(err error) {
	b.batching.Store(false)
	b.mu.Lock()
	first := !b.unbatchErr
	b.unbatchErr = true
	b.signalLocked() // queued requests are now ready one at a time
	b.mu.Unlock()
	if first {
		b.obs.Unbatchable(err)
	}
}
