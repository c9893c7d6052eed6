package batching_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/tensor"
)

// traceLog records one request's RequestTracer events.
type traceLog struct {
	mu       sync.Mutex // guards the following
	left     []error    // LeftQueue's err, per call
	waited   []time.Duration
	executed [][2]int // rows, requests
}

func (l *traceLog) LeftQueue(_ context.Context, enqueued, left time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.left = append(l.left, err)
	l.waited = append(l.waited, left.Sub(enqueued))
}

func (l *traceLog) Executed(_ context.Context, start, end time.Time, rows, requests int, _ error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.executed = append(l.executed, [2]int{rows, requests})
}

func TestRequestTracerSeesQueueAndBatch(t *testing.T) {
	m := newFakeModel(rowwiseSig(), rowwise, true)
	b := startBatcher(t, m, batching.WithMaxBatchSize(8), batching.WithMaxQueueDelay(time.Hour), batching.WithPreferredBatchSizes(3))
	logs := []*traceLog{{}, {}}
	var wg sync.WaitGroup
	for i, rows := range []int64{1, 2} {
		wg.Go(func() {
			ctx := batching.WithRequestTracer(context.Background(), logs[i])
			if _, err := b.Predict(ctx, map[string]tensor.Tensor{"x": f32([]int64{rows, 1}, make([]float32, rows))}); err != nil {
				t.Error(err)
			}
		})
		time.Sleep(10 * time.Millisecond) // queue them in order
	}
	close(m.nextCall(t).release)
	waitFor(t, &wg)
	for i, l := range logs {
		l.mu.Lock()
		if len(l.left) != 1 || l.left[0] != nil || l.waited[0] < 0 {
			t.Errorf("request %d: LeftQueue calls %v (waited %v), want one with nil", i, l.left, l.waited)
		}
		if len(l.executed) != 1 || l.executed[0] != [2]int{3, 2} {
			t.Errorf("request %d: Executed %v, want one batch of 3 rows from 2 requests", i, l.executed)
		}
		l.mu.Unlock()
	}
}

func TestRequestTracerSeesDrop(t *testing.T) {
	m := newFakeModel(rowwiseSig(), rowwise, true)
	b := startBatcher(t, m, batching.WithMaxBatchSize(0), batching.WithPredictConcurrency(1))
	var wg sync.WaitGroup
	wg.Go(func() {
		b.Predict(context.Background(), map[string]tensor.Tensor{"x": f32([]int64{1, 1}, []float32{1})})
	})
	first := m.nextCall(t)
	l := &traceLog{}
	ctx, cancel := context.WithCancel(batching.WithRequestTracer(context.Background(), l))
	wg.Go(func() {
		_, err := b.Predict(ctx, map[string]tensor.Tensor{"x": f32([]int64{1, 1}, []float32{2})})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Predict = %v, want context.Canceled", err)
		}
	})
	eventually(t, "the second request is queued", func() bool { return b.QueueDepthForTest() == 1 })
	cancel()
	eventually(t, "the cancelled request leaves the queue", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.left) == 1
	})
	close(first.release)
	waitFor(t, &wg)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.left) != 1 || !errors.Is(l.left[0], context.Canceled) || len(l.executed) != 0 {
		t.Errorf("cancelled request: LeftQueue %v, Executed %v; want one LeftQueue with context.Canceled and no execution", l.left, l.executed)
	}
}

// oneChunk is a streaming model that emits one empty chunk.
type oneChunk struct{}

func (oneChunk) Signature() engine.Signature { return engine.Signature{} }
func (oneChunk) Close() error                { return nil }
func (oneChunk) Stream(_ context.Context, _ map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) error {
	return emit(map[string]tensor.Tensor{})
}

func TestRequestTracerSeesStream(t *testing.T) {
	l := &traceLog{}
	lim := batching.NewStreamLimiter(oneChunk{}, 1, 1, nil)
	ctx := batching.WithRequestTracer(context.Background(), l)
	if err := lim.Stream(ctx, nil, func(map[string]tensor.Tensor) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if len(l.left) != 1 || l.left[0] != nil || len(l.executed) != 1 || l.executed[0] != [2]int{0, 1} {
		t.Errorf("stream: LeftQueue %v, Executed %v; want one each, the execution of 0 rows from 1 request", l.left, l.executed)
	}
}
