package cuda

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fake records what the worker's hooks saw.
type fake struct {
	setupTid    atomic.Int64
	teardownTid atomic.Int64
	teardowns   atomic.Int32
	setupErr    error
}

func (f *fake) hooks() hooks {
	return hooks{
		setup: func(*Worker) error {
			f.setupTid.Store(int64(syscall.Gettid()))
			return f.setupErr
		},
		teardown: func(*Worker) error {
			f.teardownTid.Store(int64(syscall.Gettid()))
			f.teardowns.Add(1)
			return nil
		},
	}
}

func startFakeWith(t *testing.T, f *fake, opts ...Option) *Worker {
	t.Helper()
	w, err := startWorker(Device{Index: 0, Name: "fake"}, f.hooks(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Stop() })
	return w
}

func startFake(t *testing.T, opts ...Option) *Worker { return startFakeWith(t, &fake{}, opts...) }

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestWorkerRunsOnOneLockedThread(t *testing.T) {
	f := &fake{}
	w := startFakeWith(t, f)
	ctx := timeout(t)
	var mu sync.Mutex
	tids := map[int]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				err := w.Do(ctx, func(*Thread) error {
					before := syscall.Gettid()
					runtime.Gosched() // a locked goroutine keeps its thread across scheduling points
					time.Sleep(10 * time.Microsecond)
					mu.Lock()
					tids[before]++
					if after := syscall.Gettid(); after != before {
						tids[after]++
					}
					mu.Unlock()
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	setup := int(f.setupTid.Load())
	if len(tids) != 1 || tids[setup] != 200 {
		t.Errorf("jobs ran on threads %v; want all 200 on the setup thread %d", tids, setup)
	}
	if got := int(f.teardownTid.Load()); got != setup {
		t.Errorf("teardown ran on thread %d, setup on %d", got, setup)
	}
}

func TestWorkerPanicIsReturned(t *testing.T) {
	w := startFake(t)
	ctx := timeout(t)
	err := w.Do(ctx, func(*Thread) error { panic("kernel table corrupt") })
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "kernel table corrupt" || !strings.Contains(string(pe.Stack), "worker_test.go") {
		t.Fatalf("Do(panic) = %v; want a PanicError with the panic value and stack", err)
	}
	want := errors.New("after")
	if err := w.Do(ctx, func(*Thread) error { return want }); err != want {
		t.Errorf("Do after a panic = %v, want the function's error", err)
	}
}

func TestWorkerCancelWhileQueued(t *testing.T) {
	w := startFake(t)
	ctx := timeout(t)
	release, running := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- w.Do(ctx, func(*Thread) error { close(running); <-release; return nil })
	}()
	<-running
	queuedCtx, cancel := context.WithCancel(ctx)
	ran := atomic.Bool{}
	queued := make(chan error, 1)
	go func() { queued <- w.Do(queuedCtx, func(*Thread) error { ran.Store(true); return nil }) }()
	time.Sleep(20 * time.Millisecond) // let it queue behind the first job
	cancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Errorf("queued Do after cancel = %v, want context.Canceled", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if ran.Load() {
		t.Error("a call cancelled while queued ran anyway")
	}
	if err := w.Do(queuedCtx, func(*Thread) error { ran.Store(true); return nil }); !errors.Is(err, context.Canceled) || ran.Load() {
		t.Errorf("Do with a cancelled context = %v (ran %v)", err, ran.Load())
	}
}

func TestWorkerStop(t *testing.T) {
	f := &fake{}
	w := startFakeWith(t, f)
	ctx := timeout(t)
	release, running := make(chan struct{}), make(chan struct{})
	inflight := make(chan error, 1)
	finished := atomic.Bool{}
	go func() {
		inflight <- w.Do(ctx, func(*Thread) error {
			close(running)
			<-release
			finished.Store(true)
			return nil
		})
	}()
	<-running
	waiting := make(chan error, 1)
	go func() { waiting <- w.Do(ctx, func(*Thread) error { return nil }) }()
	time.Sleep(20 * time.Millisecond)

	var wg sync.WaitGroup
	stopErrs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); stopErrs <- w.Stop() }()
	}
	if err := <-waiting; !errors.Is(err, ErrStopped) {
		t.Errorf("a call waiting at Stop got %v, want ErrStopped", err)
	}
	time.Sleep(20 * time.Millisecond)
	if f.teardowns.Load() != 0 {
		t.Fatal("teardown ran while a call was in flight")
	}
	close(release)
	wg.Wait()
	close(stopErrs)
	for err := range stopErrs {
		if err != nil {
			t.Errorf("Stop = %v", err)
		}
	}
	if err := <-inflight; err != nil || !finished.Load() {
		t.Errorf("the call in flight at Stop returned %v (finished %v); want it completed", err, finished.Load())
	}
	if n := f.teardowns.Load(); n != 1 {
		t.Errorf("teardown ran %d times, want once", n)
	}
	if err := w.Do(ctx, func(*Thread) error { return nil }); !errors.Is(err, ErrStopped) {
		t.Errorf("Do after Stop = %v, want ErrStopped", err)
	}
}

func TestWorkerSetupFailure(t *testing.T) {
	f := &fake{setupErr: errors.New("no context")}
	w, err := startWorker(Device{}, f.hooks(), nil)
	if w != nil || err == nil || !strings.Contains(err.Error(), "no context") {
		t.Fatalf("startWorker with a failing setup = %v, %v", w, err)
	}
	if f.teardowns.Load() != 1 || f.teardownTid.Load() != f.setupTid.Load() {
		t.Errorf("after a failed setup teardown ran %d times (thread %d, setup thread %d); want once on the same thread",
			f.teardowns.Load(), f.teardownTid.Load(), f.setupTid.Load())
	}
}

func TestWorkerGoexit(t *testing.T) {
	f := &fake{}
	w := startFakeWith(t, f)
	ctx := timeout(t)
	if err := w.Do(ctx, func(*Thread) error { runtime.Goexit(); return nil }); !errors.Is(err, errWorkerGoexit) {
		t.Fatalf("Do(Goexit) = %v, want errWorkerGoexit", err)
	}
	if err := w.Stop(); !errors.Is(err, errWorkerGoexit) {
		t.Errorf("Stop after a Goexit = %v, want errWorkerGoexit", err)
	}
	if f.teardowns.Load() != 1 {
		t.Errorf("teardown ran %d times, want once", f.teardowns.Load())
	}
	if err := w.Do(ctx, func(*Thread) error { return nil }); !errors.Is(err, ErrStopped) {
		t.Errorf("Do after the worker died = %v, want ErrStopped", err)
	}
}

func TestThreadEscape(t *testing.T) {
	w := startFake(t)
	var kept *Thread
	if err := w.Do(timeout(t), func(th *Thread) error {
		kept = th
		if th.Worker() != w {
			t.Error("Thread.Worker is not the worker")
		}
		return th.check()
	}); err != nil {
		t.Fatal(err)
	}
	if err := kept.check(); !errors.Is(err, ErrThreadEscaped) {
		t.Errorf("a Thread used after its call: %v, want ErrThreadEscaped", err)
	}
	var nilThread *Thread
	if err := nilThread.check(); !errors.Is(err, ErrThreadEscaped) {
		t.Errorf("nil Thread: %v", err)
	}
}

func TestWorkerOptions(t *testing.T) {
	w := startFake(t, WithMemoryLimit(1<<30), WithSyncAfterLaunch(true))
	if w.opts.memoryLimit != 1<<30 || !w.opts.syncAfterLaunch || w.MemStats().Limit != 1<<30 {
		t.Errorf("options not applied: %+v, %+v", w.opts, w.MemStats())
	}
	if w.Device().Name != "fake" {
		t.Errorf("Device() = %+v", w.Device())
	}
}
