package cuda

import (
	"context"
	"errors"
	"runtime"
	"sync"
)

// Option configures a Worker.
type Option interface{ apply(*options) }

type options struct {
	memoryLimit     uint64
	syncAfterLaunch bool
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithMemoryLimit caps the device memory the worker itself allocates
// (Thread.Alloc), leaving the rest to ONNX Runtime and others. Allocations
// past it fail with ErrOutOfMemory. The default, 0, means no cap.
func WithMemoryLimit(bytes uint64) Option {
	return optionFunc(func(o *options) { o.memoryLimit = bytes })
}

// WithSyncAfterLaunch makes Thread.Launch wait for every kernel and report a
// fault while it ran as a LaunchError naming it. The default, off, returns as
// soon as the driver accepted the launch (its errors are always checked); a
// fault then shows at the next synchronisation.
func WithSyncAfterLaunch(on bool) Option {
	return optionFunc(func(o *options) { o.syncAfterLaunch = on })
}

// Worker owns one device: a goroutine locked to an OS thread that holds the
// device's retained primary context current and runs every CUDA call made
// through Do. Create it with Open; it is safe for concurrent use.
type Worker struct {
	dev    Device
	opts   options
	ledger *ledger
	hooks  hooks

	jobs     chan job
	stopping chan struct{} // closed by the first Stop
	exited   chan struct{} // closed when the worker goroutine is done
	stopOnce sync.Once
	stopErr  error // set by the worker goroutine before exited is closed

	// Only the worker goroutine touches the following.
	state       deviceState
	buffers     map[*DeviceBuffer]bool
	hostBuffers map[*HostBuffer]bool
	streams     map[*Stream]bool
	events      map[*Event]bool
	modules     map[*Module]bool
}

// hooks are the device-specific halves of a worker: setup runs on the locked
// thread before the first job, teardown after the last (also when setup
// failed halfway). Tests substitute fakes.
type hooks struct {
	setup    func(*Worker) error
	teardown func(*Worker) error
}

type job struct {
	ctx  context.Context
	fn   func(*Thread) error
	done chan error // buffered: the worker never blocks on it
}

// startWorker starts the worker goroutine and waits for setup.
func startWorker(dev Device, h hooks, opts []Option) (*Worker, error) {
	w := &Worker{
		dev:         dev,
		hooks:       h,
		jobs:        make(chan job),
		stopping:    make(chan struct{}),
		exited:      make(chan struct{}),
		buffers:     make(map[*DeviceBuffer]bool),
		hostBuffers: make(map[*HostBuffer]bool),
		streams:     make(map[*Stream]bool),
		events:      make(map[*Event]bool),
		modules:     make(map[*Module]bool),
	}
	for _, o := range opts {
		o.apply(&w.opts)
	}
	w.ledger = newLedger(w.opts.memoryLimit)
	ready := make(chan error, 1)
	go w.loop(ready)
	if err := <-ready; err != nil {
		<-w.exited
		return nil, err
	}
	return w, nil
}

// loop is the worker goroutine. It stays locked to its OS thread for its
// whole life and never unlocks: the runtime ends the thread with it, so no
// other goroutine ever runs on a thread with the context current.
func (w *Worker) loop(ready chan<- error) {
	runtime.LockOSThread()
	finished := false
	defer func() {
		// Reached normally after teardown, or through runtime.Goexit in a
		// job (t.FailNow inside Do); tear down on this thread either way.
		if !finished {
			w.stopErr = errors.Join(errWorkerGoexit, w.hooks.teardown(w))
			w.stopOnce.Do(func() { close(w.stopping) })
		}
		close(w.exited)
	}()
	if err := w.hooks.setup(w); err != nil {
		err = errors.Join(err, w.hooks.teardown(w))
		finished = true
		ready <- err
		return
	}
	ready <- nil
	for {
		select {
		case j := <-w.jobs:
			j.done <- w.run(j)
		case <-w.stopping:
			w.stopErr = w.hooks.teardown(w)
			finished = true
			return
		}
	}
}

var errWorkerGoexit = errors.New("cuda: a worker function called runtime.Goexit (t.FailNow?); the worker stopped")

// run executes one job, turning a panic into a *PanicError and a Goexit into
// an error for the caller before the goroutine unwinds.
func (w *Worker) run(j job) (err error) {
	if err := j.ctx.Err(); err != nil {
		return err // cancelled while the send raced with the worker
	}
	t := &Thread{w: w, live: true}
	returned := false
	defer func() {
		t.live = false
		if r := recover(); r != nil {
			err = newPanicError(r)
			return
		}
		if !returned {
			j.done <- errWorkerGoexit
		}
	}()
	err = j.fn(t)
	returned = true
	return err
}

// Do runs fn on the worker's thread, with the device's primary context
// current, and returns its error. Calls run one at a time in arrival order.
// ctx is honoured only while the call waits for the worker: once fn starts it
// runs to completion. A panic in fn is returned as a *PanicError. After Stop,
// Do returns ErrStopped. fn must not call Do or Stop of the same worker
// (that deadlocks) and must not keep t.
func (w *Worker) Do(ctx context.Context, fn func(t *Thread) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j := job{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case w.jobs <- j:
	case <-w.stopping:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-j.done
}

// Stop stops the worker after the call in flight, if any. Calls still
// waiting get ErrStopped. It frees what the worker's functions left
// allocated (buffers, pinned memory, streams, events, modules), releases the
// primary context and ends the thread. Stop is idempotent: later calls wait
// for the first and return its result.
func (w *Worker) Stop() error {
	w.stopOnce.Do(func() { close(w.stopping) })
	<-w.exited
	return w.stopErr
}

// Device describes the worker's device as Open found it.
func (w *Worker) Device() Device { return w.dev }

// MemStats returns the worker's accounting; safe to call at any time.
func (w *Worker) MemStats() MemStats { return w.ledger.snapshot() }

// MemoryReport asks the driver for the device's free and total memory,
// through the worker, and adds the worker's accounting.
func (w *Worker) MemoryReport(ctx context.Context) (MemoryReport, error) {
	var r MemoryReport
	err := w.Do(ctx, func(t *Thread) error {
		var err error
		r.Free, r.Total, err = t.MemInfo()
		return err
	})
	r.Stats = w.MemStats()
	return r, err
}

// Thread is a job's handle on the worker thread. Its methods make CUDA calls
// in the worker's context and are valid only inside the Worker.Do call that
// received it; afterwards they return ErrThreadEscaped.
type Thread struct {
	w    *Worker
	live bool
}

func (t *Thread) check() error {
	if t == nil || !t.live {
		return ErrThreadEscaped
	}
	return nil
}

// Worker returns the worker running this thread.
func (t *Thread) Worker() *Worker { return t.w }
