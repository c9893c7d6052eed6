package batching_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/tensor"
)

// multiSig has inputs and outputs of several dtypes and trailing shapes:
//
//	x    float32 [N, D]     y  float64 [N, D]    = 2x + sum(ids[r])
//	ids  int64   [N, 3]     s  int32   [N]       = sum(ids[r]) + mask[r]
//	mask bool    [N]        m  bool    [N]       = !mask[r]
//	h    uint16  [N, K, 2]  hh uint16  [N, K, 2] = ^h
//
// Every output row depends only on the same row of the inputs.
func multiSig() engine.Signature {
	spec := func(name string, d tensor.DType, shape ...int64) engine.TensorSpec {
		return engine.TensorSpec{Name: name, DType: d, Shape: shape, DimNames: make([]string, len(shape))}
	}
	return engine.Signature{
		Inputs: []engine.TensorSpec{
			spec("x", tensor.Float32, dyn, dyn), spec("ids", tensor.Int64, dyn, 3),
			spec("mask", tensor.Bool, dyn), spec("h", tensor.Uint16, dyn, dyn, 2),
		},
		Outputs: []engine.TensorSpec{
			spec("y", tensor.Float64, dyn, dyn), spec("s", tensor.Int32, dyn),
			spec("m", tensor.Bool, dyn), spec("hh", tensor.Uint16, dyn, dyn, 2),
		},
	}
}

func multi(in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	x, ids, mask, h := in["x"], in["ids"], in["mask"], in["h"]
	n, d := x.Shape[0], x.Shape[1]
	xv, idv := f32s(x), i64s(ids)
	y := make([]byte, 8*n*d)
	s := make([]byte, 4*n)
	m := make([]byte, n)
	hh := make([]byte, len(h.Data))
	for r := range n {
		sum := idv[3*r] + idv[3*r+1] + idv[3*r+2]
		for k := range d {
			binary.LittleEndian.PutUint64(y[8*(r*d+k):], math.Float64bits(2*float64(xv[r*d+k])+float64(sum)))
		}
		binary.LittleEndian.PutUint32(s[4*r:], uint32(int32(sum)+int32(mask.Data[r])))
		m[r] = 1 - mask.Data[r]
	}
	for i, c := range h.Data {
		hh[i] = ^c
	}
	return map[string]tensor.Tensor{
		"y":  mustTensor(tensor.Float64, []int64{n, d}, y),
		"s":  mustTensor(tensor.Int32, []int64{n}, s),
		"m":  mustTensor(tensor.Bool, []int64{n}, m),
		"hh": mustTensor(tensor.Uint16, slices.Clone(h.Shape), hh),
	}, nil
}

func multiInput(rng *rand.Rand, rows, d, k int) map[string]tensor.Tensor {
	x := make([]float32, rows*d)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	ids := make([]int64, rows*3)
	for i := range ids {
		ids[i] = rng.Int64N(1000) - 500
	}
	mask := make([]byte, rows)
	for i := range mask {
		mask[i] = byte(rng.IntN(2))
	}
	h := make([]byte, rows*k*2*2)
	for i := range h {
		h[i] = byte(rng.IntN(256))
	}
	r := int64(rows)
	return map[string]tensor.Tensor{
		"x":    f32([]int64{r, int64(d)}, x),
		"ids":  i64([]int64{r, 3}, ids),
		"mask": mustTensor(tensor.Bool, []int64{r}, mask),
		"h":    mustTensor(tensor.Uint16, []int64{r, int64(k), 2}, h),
	}
}

// releaseAll lets every execution of m compute as soon as it starts, after
// the first, which waits for first to be closed. It stops when stop closes.
func releaseAll(m *fakeModel, first <-chan struct{}, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		gate := first
		for {
			select {
			case c := <-m.started:
				if gate != nil {
					select {
					case <-gate:
					case <-stop:
					}
					gate = nil
				}
				close(c.release)
			case <-stop:
				return
			}
		}
	})
	return &wg
}

// TestEquivalence sends requests of random row counts and trailing shapes
// while the model is busy, so that they queue up and form batches, and checks
// that every caller gets exactly what an unbatched run of its request gives.
func TestEquivalence(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rec := &recorder{}
	m := newFakeModel(multiSig(), multi, true)
	b := startBatcher(t, m, batching.WithMaxBatchSize(8), batching.WithMaxQueueDelay(0), batching.WithObserver(rec))
	first, stop := make(chan struct{}), make(chan struct{})
	wg := releaseAll(m, first, stop)
	defer wg.Wait()
	defer close(stop)

	const n = 60
	type outcome struct {
		in, out map[string]tensor.Tensor
		err     error
	}
	outcomes := make([]outcome, n)
	var done sync.WaitGroup
	predict := func(i int) {
		done.Go(func() {
			outcomes[i].out, outcomes[i].err = b.Predict(t.Context(), outcomes[i].in)
		})
	}
	outcomes[0].in = multiInput(rng, 1, 2, 1)
	predict(0)
	eventually(t, "the first request executes", func() bool { _, _, runs, _ := m.stats(); return runs == 1 })
	for i := 1; i < n; i++ {
		rows := 1 + rng.IntN(5)
		if i == 7 {
			rows = 0 // a zero-row request among them
		}
		outcomes[i].in = multiInput(rng, rows, 1+rng.IntN(3), 1+rng.IntN(2))
		predict(i)
	}
	eventually(t, "every other request is queued", func() bool {
		var d int
		rec.read(func(r *recorder) { d = r.depth })
		return d == n-1
	})
	close(first)
	done.Wait()

	for i, o := range outcomes {
		if o.err != nil {
			t.Fatalf("request %d: %v", i, o.err)
		}
		want, _ := multi(o.in)
		if diff := cmp.Diff(want, o.out); diff != "" {
			t.Errorf("request %d (rows %d): outputs differ from an unbatched run (-want +got):\n%s", i, o.in["x"].Shape[0], diff)
		}
	}
	var multiRequest, maxRows int
	rec.read(func(r *recorder) {
		for _, be := range r.batches {
			if be.requests > 1 {
				multiRequest++
			}
			maxRows = max(maxRows, be.rows)
		}
	})
	if multiRequest == 0 {
		t.Error("no execution held more than one request; the test did not exercise batching")
	}
	if maxRows > 8 {
		t.Errorf("an execution held %d rows, more than the maximum batch size 8", maxRows)
	}
	if _, _, _, mutated := m.stats(); len(mutated) > 0 {
		t.Errorf("inputs %v changed during an execution", mutated)
	}
}

func TestInvalidInputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tooMany := multiInput(rng, 5, 2, 1)
	disagree := multiInput(rng, 2, 2, 1)
	disagree["mask"] = mustTensor(tensor.Bool, []int64{3}, make([]byte, 3))
	missing := multiInput(rng, 1, 2, 1)
	delete(missing, "h")
	wrongDType := multiInput(rng, 1, 2, 1)
	wrongDType["ids"] = mustTensor(tensor.Int32, []int64{1, 3}, make([]byte, 12))
	for _, tc := range []struct {
		name   string
		inputs map[string]tensor.Tensor
		want   []string // substrings of the error
	}{
		{"too many rows", tooMany, []string{"5 rows", "maximum batch size of 4"}},
		{"disagreeing batch dimension", disagree, []string{`"x"`, `"mask"`, "2 and 3"}},
		{"missing input", missing, []string{`"h"`}},
		{"wrong dtype", wrongDType, []string{`"ids"`, "int64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			m := newFakeModel(multiSig(), multi, false)
			b := startBatcher(t, m, batching.WithMaxBatchSize(4), batching.WithObserver(rec))
			_, err := b.Predict(t.Context(), tc.inputs)
			if !errors.Is(err, engine.ErrInvalidInput) {
				t.Fatalf("Predict = %v, want an error wrapping engine.ErrInvalidInput", err)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}
			if _, _, runs, _ := m.stats(); runs != 0 {
				t.Errorf("the model ran %d times", runs)
			}
			rec.read(func(r *recorder) {
				if len(r.depths) != 0 {
					t.Errorf("the request was queued (depths %v)", r.depths)
				}
			})
		})
	}
}

// TestUnbatchedAcceptsAnyRows: with batching off, the inputs' first
// dimensions need not agree and are not limited.
func TestUnbatchedAcceptsAnyRows(t *testing.T) {
	in := multiInput(rand.New(rand.NewPCG(5, 6)), 40, 2, 1)
	in["mask"] = mustTensor(tensor.Bool, []int64{3}, make([]byte, 3))
	m := newFakeModel(multiSig(), func(in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		return map[string]tensor.Tensor{"s": in["mask"]}, nil
	}, false)
	b := startBatcher(t, m, batching.WithMaxBatchSize(0))
	out, err := b.Predict(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in["mask"], out["s"]); diff != "" {
		t.Errorf("output differs (-want +got):\n%s", diff)
	}
}

// TestQueueFullManyClients: with the model stuck, 100 concurrent callers get
// exactly the queue's room and ErrQueueFull at once for the rest.
func TestQueueFullManyClients(t *testing.T) {
	rec := &recorder{}
	m := newFakeModel(rowwiseSig(), rowwise, true)
	b := startBatcher(t, m, batching.WithMaxBatchSize(1), batching.WithMaxQueueDelay(0),
		batching.WithMaxQueueSize(10), batching.WithObserver(rec))
	var wg sync.WaitGroup
	defer shutdown(m, b, &wg)
	wg.Go(func() {
		if _, err := b.Predict(t.Context(), taggedInput(0, 1, 2)); err != nil {
			t.Errorf("first request: %v", err)
		}
	})
	c := m.nextCall(t) // the model is now stuck
	var full, ok atomic.Int32
	for i := range 100 {
		wg.Go(func() {
			_, err := b.Predict(t.Context(), taggedInput(i+1, 1, 2))
			switch {
			case errors.Is(err, batching.ErrQueueFull):
				full.Add(1)
			case err == nil:
				ok.Add(1)
			default:
				t.Errorf("Predict: %v", err)
			}
		})
	}
	eventually(t, "90 callers got ErrQueueFull while the model is stuck", func() bool { return full.Load() == 90 })
	rec.read(func(r *recorder) {
		if r.depth != 10 {
			t.Errorf("queue depth %d, want 10", r.depth)
		}
	})
	if _, _, runs, _ := m.stats(); runs != 1 {
		t.Errorf("%d executions while the model is stuck, want 1", runs)
	}
	stop := make(chan struct{})
	rel := releaseAll(m, nil, stop)
	close(c.release)
	eventually(t, "the queued requests complete", func() bool { return ok.Load() == 10 })
	close(stop)
	rel.Wait()
	if full.Load() != 90 {
		t.Errorf("%d ErrQueueFull, want 90", full.Load())
	}
}

// TestPredictConcurrency: with 3 executions stuck, no fourth starts; under
// load the bound holds.
func TestPredictConcurrency(t *testing.T) {
	t.Run("stuck", func(t *testing.T) {
		clk := batching.NewFakeClock()
		m := newFakeModel(rowwiseSig(), rowwise, true)
		b := startBatcher(t, m, batching.WithMaxBatchSize(1), batching.WithPredictConcurrency(3), batching.WithClock(clk))
		var wg sync.WaitGroup
		defer shutdown(m, b, &wg)
		for i := range 5 {
			wg.Go(func() {
				if _, err := b.Predict(t.Context(), taggedInput(i, 1, 2)); err != nil {
					t.Error(err)
				}
			})
		}
		var calls []*call
		for range 3 {
			calls = append(calls, m.nextCall(t))
		}
		eventually(t, "the scheduler sleeps with two requests queued", func() bool {
			until, ok := b.Settled()
			return ok && until.IsZero()
		})
		if running, _, runs, _ := m.stats(); running != 3 || runs != 3 {
			t.Errorf("%d executions in flight, %d started, want 3 and 3", running, runs)
		}
		close(calls[0].release)
		calls = append(calls, m.nextCall(t))
		close(calls[1].release)
		calls = append(calls, m.nextCall(t))
		for _, c := range calls[2:] {
			close(c.release)
		}
		waitFor(t, &wg)
		if _, maxRunning, _, _ := m.stats(); maxRunning != 3 {
			t.Errorf("at most %d executions ran at once, want 3", maxRunning)
		}
	})
	t.Run("load", func(t *testing.T) {
		m := newFakeModel(rowwiseSig(), func(in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
			time.Sleep(100 * time.Microsecond)
			return rowwise(in)
		}, false)
		m.started = nil
		b := startBatcher(t, m, batching.WithMaxBatchSize(4), batching.WithMaxQueueDelay(50*time.Microsecond), batching.WithPredictConcurrency(3))
		var wg sync.WaitGroup
		for c := range 32 {
			wg.Go(func() {
				for i := range 20 {
					in := taggedInput(c*20+i, 1+i%3, 2)
					out, err := b.Predict(t.Context(), in)
					if err != nil {
						t.Error(err)
						return
					}
					want, _ := rowwise(in)
					if diff := cmp.Diff(want, out); diff != "" {
						t.Errorf("outputs differ (-want +got):\n%s", diff)
						return
					}
				}
			})
		}
		wg.Wait()
		if _, maxRunning, _, _ := m.stats(); maxRunning > 3 {
			t.Errorf("%d executions ran at once, concurrency is 3", maxRunning)
		}
	})
}

// TestCancelWhileQueuedNeverExecutes cancels every other request while the
// model is stuck, then checks that the executions held exactly the others.
func TestCancelWhileQueuedNeverExecutes(t *testing.T) {
	rec := &recorder{}
	m := newFakeModel(rowwiseSig(), rowwise, true)
	b := startBatcher(t, m, batching.WithMaxBatchSize(4), batching.WithMaxQueueDelay(0), batching.WithObserver(rec))
	var wg sync.WaitGroup
	defer shutdown(m, b, &wg)
	wg.Go(func() {
		if _, err := b.Predict(t.Context(), taggedInput(0, 1, 2)); err != nil {
			t.Error(err)
		}
	})
	first := m.nextCall(t)
	const n = 40
	cancels := make([]context.CancelFunc, n+1)
	errs := make([]chan error, n+1)
	for i := 1; i <= n; i++ {
		ctx, cancel := context.WithCancel(t.Context())
		cancels[i], errs[i] = cancel, make(chan error, 1)
		wg.Go(func() {
			in := taggedInput(i, 1+i%2, 2)
			out, err := b.Predict(ctx, in)
			if err == nil {
				want, _ := rowwise(in)
				if diff := cmp.Diff(want, out); diff != "" {
					err = fmt.Errorf("outputs differ (-want +got):\n%s", diff)
				}
			}
			errs[i] <- err
		})
	}
	eventually(t, "all requests are queued", func() bool {
		var d int
		rec.read(func(r *recorder) { d = r.depth })
		return d == n
	})
	for i := 1; i <= n; i += 2 {
		cancels[i]()
		select {
		case err := <-errs[i]:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled request %d: %v", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("cancelled request %d did not return while the model is stuck", i)
		}
	}
	rec.read(func(r *recorder) {
		if r.depth != n/2 {
			t.Errorf("queue depth %d after cancelling %d of %d, want %d", r.depth, n/2, n, n/2)
		}
	})
	executed := map[int]int{}
	var mu sync.Mutex
	stop := make(chan struct{})
	var rel sync.WaitGroup
	rel.Go(func() {
		for {
			select {
			case c := <-m.started:
				ids, _, err := requestsOf(c.snapshot["x"])
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				for _, id := range ids {
					executed[id]++
				}
				mu.Unlock()
				close(c.release)
			case <-stop:
				return
			}
		}
	})
	close(first.release)
	for i := 2; i <= n; i += 2 {
		if err := <-errs[i]; err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	close(stop)
	rel.Wait()
	for i := 1; i <= n; i++ {
		want := 0
		if i%2 == 0 {
			want = 1
		}
		if executed[i] != want {
			t.Errorf("request %d executed %d times, want %d", i, executed[i], want)
		}
		cancels[i]()
	}
	rec.read(func(r *recorder) {
		if len(r.dropped) != n/2 || r.resultDropped != 0 {
			t.Errorf("observed %d dropped and %d results dropped, want %d and 0", len(r.dropped), r.resultDropped, n/2)
		}
	})
}

// TestCancelBeforeCopy: a caller that leaves after its request was taken
// into a batch but before the inputs were copied returns at once, and the
// request is not executed (its inputs are not read after Predict returns).
func TestCancelBeforeCopy(t *testing.T) {
	rec := &recorder{}
	hook, resume := make(chan bool, 4), make(chan struct{})
	m := newFakeModel(rowwiseSig(), rowwise, true)
	b := startBatcher(t, m, batching.WithMaxQueueDelay(0), batching.WithObserver(rec),
		batching.WithStageHook(func(copying bool) {
			hook <- copying
			<-resume
		}))
	resumeOnce := sync.OnceFunc(func() { close(resume) })
	t.Cleanup(resumeOnce)
	ctx, cancel := context.WithCancel(t.Context())
	in := taggedInput(1, 2, 2)
	done := make(chan error, 1)
	go func() {
		_, err := b.Predict(ctx, in)
		done <- err
	}()
	if copying := <-hook; copying {
		t.Fatal("the hook ran first with copying set")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Predict = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Predict did not return after its cancellation")
	}
	clear(in["x"].Data) // the caller owns its inputs again
	resumeOnce()
	b.Close()
	if _, _, runs, _ := m.stats(); runs != 0 {
		t.Errorf("the model ran %d times for a request whose caller left before the copy", runs)
	}
	rec.read(func(r *recorder) {
		if r.resultDropped != 1 || len(r.dequeued) != 1 {
			t.Errorf("observed %d results dropped and %d dequeued, want 1 and 1", r.resultDropped, len(r.dequeued))
		}
	})
}

// TestCancelDuringCopy: a caller that leaves while its inputs are being
// copied waits for the copy, not for the execution.
func TestCancelDuringCopy(t *testing.T) {
	rec := &recorder{}
	hook, resume := make(chan bool, 2), make(chan struct{})
	m := newFakeModel(rowwiseSig(), rowwise, true)
	b := startBatcher(t, m, batching.WithMaxQueueDelay(0), batching.WithObserver(rec),
		batching.WithStageHook(func(copying bool) {
			hook <- copying
			if copying {
				<-resume
			}
		}))
	resumeOnce := sync.OnceFunc(func() { close(resume) })
	t.Cleanup(resumeOnce)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := b.Predict(ctx, taggedInput(1, 2, 2))
		done <- err
	}()
	<-hook
	if copying := <-hook; !copying {
		t.Fatal("the hook did not run before copying")
	}
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Predict returned %v while its inputs were being copied", err)
	case <-time.After(50 * time.Millisecond):
	}
	resumeOnce()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Predict = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Predict did not return after the copy")
	}
	c := m.nextCall(t) // the one execution, whose context is the caller's
	<-c.returned
	if !errors.Is(c.err, context.Canceled) {
		t.Errorf("the execution returned %v, want context.Canceled", c.err)
	}
	rec.read(func(r *recorder) {
		if r.resultDropped != 1 {
			t.Errorf("observed %d results dropped, want 1", r.resultDropped)
		}
	})
}

// TestModelErrors: an error of a batched execution reaches every request of
// the batch; a panicking model fails the request, not the process.
func TestModelErrors(t *testing.T) {
	boom := errors.New("boom")
	var panicked atomic.Bool
	m := newFakeModel(rowwiseSig(), func(in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		if f32s(in["x"])[0] >= 9000 && panicked.CompareAndSwap(false, true) {
			panic("model exploded")
		}
		return nil, boom
	}, true)
	b := startBatcher(t, m, batching.WithMaxBatchSize(8), batching.WithMaxQueueDelay(0))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	wg.Go(func() { _, errs[0] = b.Predict(t.Context(), taggedInput(1, 1, 2)) })
	first := m.nextCall(t)
	for i := 1; i < 3; i++ {
		wg.Go(func() { _, errs[i] = b.Predict(t.Context(), taggedInput(i+1, 1, 2)) })
		eventually(t, "the request is queued", func() bool { return countQueued(b) == i })
	}
	close(first.release)
	second := m.nextCall(t)
	if ids, _, _ := requestsOf(second.snapshot["x"]); !slices.Equal(ids, []int{2, 3}) {
		t.Fatalf("second execution holds %v, want [2 3]", ids)
	}
	close(second.release)
	waitFor(t, &wg)
	for i, err := range errs[:3] {
		if !errors.Is(err, boom) {
			t.Errorf("request %d: %v, want boom", i+1, err)
		}
	}
	go func() { close((<-m.started).release) }()
	_, err := b.Predict(t.Context(), taggedInput(9, 1, 2))
	if !errors.Is(err, engine.ErrRuntime) || !strings.Contains(err.Error(), "model exploded") {
		t.Errorf("after a panic: %v, want an engine.ErrRuntime naming the panic", err)
	}
}

// countQueued returns the number of queued requests.
func countQueued(b *batching.Batcher) int { return b.QueueDepthForTest() }

// TestOutputsAreOwned: outputs of requests that shared an execution do not
// alias: appending to one never changes another.
func TestOutputsAreOwned(t *testing.T) {
	m := newFakeModel(rowwiseSig(), rowwise, true)
	b := startBatcher(t, m, batching.WithMaxBatchSize(8), batching.WithMaxQueueDelay(0))
	var wg sync.WaitGroup
	outs := make([]map[string]tensor.Tensor, 3)
	wg.Go(func() { outs[0], _ = b.Predict(t.Context(), taggedInput(1, 1, 2)) })
	first := m.nextCall(t)
	wg.Go(func() { outs[1], _ = b.Predict(t.Context(), taggedInput(2, 2, 2)) })
	eventually(t, "the second request is queued", func() bool { return countQueued(b) == 1 })
	wg.Go(func() { outs[2], _ = b.Predict(t.Context(), taggedInput(3, 2, 2)) })
	eventually(t, "the third request is queued", func() bool { return countQueued(b) == 2 })
	close(first.release)
	second := m.nextCall(t)
	close(second.release)
	waitFor(t, &wg)
	if ids, _, _ := requestsOf(second.snapshot["x"]); len(ids) != 2 {
		t.Fatalf("the second execution holds requests %v, want two", ids)
	}
	want, _ := rowwise(taggedInput(3, 2, 2))
	y := outs[1]["y"].Data
	if cap(y) != len(y) {
		t.Errorf("output capacity %d exceeds its length %d", cap(y), len(y))
	}
	_ = append(y, make([]byte, 64)...)
	clear(y)
	if diff := cmp.Diff(want, outs[2]); diff != "" {
		t.Errorf("writing one caller's output changed another's (-want +got):\n%s", diff)
	}
}

func TestClose(t *testing.T) {
	m := newFakeModel(rowwiseSig(), rowwise, true)
	clk := batching.NewFakeClock()
	b := startBatcher(t, m, batching.WithMaxQueueDelay(time.Hour), batching.WithClock(clk))
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { _, errs[i] = b.Predict(t.Context(), taggedInput(i, 1, 2)) })
	}
	eventually(t, "all requests are queued", func() bool { return countQueued(b) == len(errs) })
	var closers sync.WaitGroup
	for range 3 {
		closers.Go(b.Close)
	}
	waitFor(t, &closers)
	waitFor(t, &wg)
	for i, err := range errs {
		if !errors.Is(err, batching.ErrClosed) {
			t.Errorf("queued request %d: %v, want ErrClosed", i, err)
		}
	}
	if _, err := b.Predict(t.Context(), taggedInput(9, 1, 2)); !errors.Is(err, batching.ErrClosed) {
		t.Errorf("Predict after Close = %v, want ErrClosed", err)
	}
	b.Close()
	if _, _, runs, _ := m.stats(); runs != 0 {
		t.Errorf("the model ran %d times", runs)
	}
}

// TestDefaults checks the documented defaults: 32 rows, one execution in
// flight, 1024 queued requests, a delay (nothing is sent early).
func TestDefaults(t *testing.T) {
	clk := batching.NewFakeClock()
	m := newFakeModel(rowwiseSig(), rowwise, true)
	b := startBatcher(t, m, batching.WithClock(clk))
	if _, err := b.Predict(t.Context(), taggedInput(0, 33, 1)); !errors.Is(err, engine.ErrInvalidInput) || !strings.Contains(err.Error(), "maximum batch size of 32") {
		t.Errorf("33 rows: %v, want an error naming the limit 32", err)
	}
	var wg sync.WaitGroup
	defer shutdown(m, b, &wg)
	wg.Go(func() { _, _ = b.Predict(t.Context(), taggedInput(1, 32, 1)) }) // full: goes at once
	first := m.nextCall(t)
	release := sync.OnceFunc(func() { close(first.release) })
	defer release()
	// Each request has its own trailing shape, so none can complete a batch,
	// and the fake clock never lets the delay pass: all stay queued.
	for i := range 1024 {
		wg.Go(func() {
			_, err := b.Predict(t.Context(), map[string]tensor.Tensor{"x": f32([]int64{1, int64(i + 1)}, make([]float32, i+1))})
			if !errors.Is(err, batching.ErrClosed) {
				t.Errorf("queued request: %v, want ErrClosed", err)
			}
		})
	}
	eventually(t, "1024 requests are queued", func() bool { return countQueued(b) == 1024 })
	if _, err := b.Predict(t.Context(), taggedInput(2, 32, 1)); !errors.Is(err, batching.ErrQueueFull) {
		t.Errorf("request 1025: %v, want ErrQueueFull", err)
	}
	eventually(t, "the scheduler sleeps until woken", func() bool {
		until, ok := b.Settled()
		return ok && until.IsZero() // the one execution slot is taken
	})
	if _, _, runs, _ := m.stats(); runs != 1 {
		t.Errorf("%d executions, want 1", runs)
	}
	release()
	b.Close() // fails the queued requests
	waitFor(t, &wg)
}

// TestObserverWaits checks the queue waits the Observer receives.
func TestObserverWaits(t *testing.T) {
	clk := batching.NewFakeClock()
	rec := &recorder{}
	m := newFakeModel(rowwiseSig(), rowwise, true)
	b := startBatcher(t, m, batching.WithMaxQueueDelay(time.Millisecond), batching.WithClock(clk), batching.WithObserver(rec))
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = b.Predict(ctx, taggedInput(1, 1, 3)) })
	eventually(t, "the first request is queued", func() bool { return countQueued(b) == 1 })
	clk.Advance(300 * time.Microsecond)
	cancel()
	waitFor(t, &wg)
	wg.Go(func() { _, _ = b.Predict(t.Context(), taggedInput(2, 1, 2)) })
	eventually(t, "the second request is queued", func() bool { return countQueued(b) == 1 })
	clk.Advance(time.Millisecond)
	close(m.nextCall(t).release)
	waitFor(t, &wg)
	rec.read(func(r *recorder) {
		if !slices.Equal(r.dropWaits, []time.Duration{300 * time.Microsecond}) || !errors.Is(r.dropped[0], context.Canceled) {
			t.Errorf("dropped %v after %v, want [context.Canceled] after [300µs]", r.dropped, r.dropWaits)
		}
		if !slices.Equal(r.dequeued, []time.Duration{time.Millisecond}) {
			t.Errorf("dequeued after %v, want [1ms]", r.dequeued)
		}
		if want := []int{1, 0, 1, 0}; !slices.Equal(r.depths, want) {
			t.Errorf("queue depths %v, want %v", r.depths, want)
		}
		if len(r.batches) != 1 || r.batches[0] != (batchEvent{rows: 1, requests: 1}) {
			t.Errorf("executions %+v, want one of 1 row", r.batches)
		}
	})
}

func TestDoneContext(t *testing.T) {
	m := newFakeModel(rowwiseSig(), rowwise, false)
	b := startBatcher(t, m)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Predict(ctx, taggedInput(1, 1, 2)); !errors.Is(err, context.Canceled) {
		t.Errorf("Predict with a done context = %v, want context.Canceled", err)
	}
	if countQueued(b) != 0 {
		t.Error("the request was queued")
	}
}
