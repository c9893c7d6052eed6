package batching

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/tensor"
)

// gatedStream is a fake streaming model whose streams block until released.
type gatedStream struct {
	started chan struct{}
	release chan struct{}
	mu      sync.Mutex
	active  int
	peak    int
}

func (g *gatedStream) Signature() engine.Signature { return engine.Signature{} }
func (g *gatedStream) Close() error                { return nil }

func (g *gatedStream) Stream(ctx context.Context, _ map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) error {
	g.mu.Lock()
	g.active++
	g.peak = max(g.peak, g.active)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.active--
		g.mu.Unlock()
	}()
	g.started <- struct{}{}
	select {
	case <-g.release:
		return emit(nil)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestStreamLimiter(t *testing.T) {
	g := &gatedStream{started: make(chan struct{}, 8), release: make(chan struct{})}
	l := NewStreamLimiter(g, 2, 1, nil)
	emit := func(map[string]tensor.Tensor) error { return nil }

	results := make(chan error, 3)
	for range 2 {
		go func() { results <- l.Stream(context.Background(), nil, emit) }()
	}
	<-g.started
	<-g.started
	// Two streams run; a third waits in the queue, a fourth is refused at once.
	go func() { results <- l.Stream(context.Background(), nil, emit) }()
	waitFor(t, func() bool { return l.waiting.Load() == 1 })
	if err := l.Stream(context.Background(), nil, emit); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("stream beyond concurrency and queue = %v, want ErrQueueFull", err)
	}
	// A waiting stream whose client leaves gives up its place.
	ctx, cancel := context.WithCancel(context.Background())
	l2 := NewStreamLimiter(g, 1, 1, nil)
	go func() { results <- l2.Stream(context.Background(), nil, emit) }()
	<-g.started
	waiter := make(chan error, 1)
	go func() { waiter <- l2.Stream(ctx, nil, emit) }()
	waitFor(t, func() bool { return l2.waiting.Load() == 1 })
	cancel()
	if err := <-waiter; !errors.Is(err, context.Canceled) || l2.waiting.Load() != 0 {
		t.Fatalf("cancelled waiter = %v (waiting %d), want context.Canceled and an empty queue", err, l2.waiting.Load())
	}
	close(g.release)
	for range 4 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if g.peak > 3 { // l allows 2, l2 allows 1
		t.Errorf("peak concurrent streams %d, want at most 3", g.peak)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}
