package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/tensor"
)

// heldModel is an engine.Model whose runs block until release is closed or
// their context ends; it counts the runs that started.
type heldModel struct {
	release chan struct{}
	runs    atomic.Int64
}

func (m *heldModel) Signature() engine.Signature { return doublerSignature }
func (m *heldModel) Close() error                { return nil }

func (m *heldModel) Run(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	m.runs.Add(1)
	select {
	case <-m.release:
		return doubler{}.Predict(ctx, in)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestThousandDroppedConnections opens 1,000 connections and drops each one
// mid-request: half while the body is half sent, half after sending it, while
// the request waits behind a stuck model. Every one must be answered 499
// (counted), nothing may stay queued, none of them may run, and (TestMain's
// goleak) no goroutine may leak.
func TestThousandDroppedConnections(t *testing.T) {
	model := &heldModel{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	obs := NewBatchObserver(reg, discardLogger())
	b := batching.New(model, batching.WithMaxBatchSize(0), batching.WithMaxQueueSize(2000), batching.WithObserver(obs))
	defer b.Close()
	s := New(Options{Registerer: reg, Gatherer: reg, Logger: discardLogger()})
	s.SetReady(Model{Signature: doublerSignature, Predictor: b})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	const body = `{"x": [[1, 2]], "k": [1]}`

	// One request occupies the model, so every later one queues behind it.
	blocker := make(chan int, 1)
	go func() {
		resp, err := ts.Client().Post(ts.URL+"/v1/models/model:predict", "application/json", strings.NewReader(body))
		if err != nil {
			blocker <- 0
			return
		}
		resp.Body.Close()
		blocker <- resp.StatusCode
	}()
	waitUntil(t, func() bool { return model.runs.Load() == 1 })

	const conns = 1000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64) // bounded client concurrency on a small machine
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dropMidRequest(t, ts.Listener.Addr().String(), body, i%2 == 0)
		}()
	}
	wg.Wait()
	cancelled := s.metrics.requests.WithLabelValues("predict", "499", "cancelled")
	waitUntil(t, func() bool { return testutil.ToFloat64(cancelled) == conns })
	if depth := testutil.ToFloat64(obs.(*batchObserver).queueDepth); depth != 0 {
		t.Errorf("queue depth %v after every client left, want 0", depth)
	}
	close(model.release)
	if status := <-blocker; status != 200 {
		t.Errorf("the request that held the model got %d, want 200", status)
	}
	if runs := model.runs.Load(); runs != 1 {
		t.Errorf("model ran %d times, want only the first request's run", runs)
	}
}

// dropMidRequest writes a predict request on a fresh connection and closes
// it: after half the body when half is set, else after the whole request
// once the server has had a moment to queue it.
func dropMidRequest(t *testing.T, addr, body string, half bool) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	head := fmt.Sprintf("POST /v1/models/model:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	if half {
		conn.Write([]byte(head + body[:len(body)/2]))
		return
	}
	conn.Write([]byte(head + body))
	conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	conn.Read(make([]byte, 1)) // times out: the request is stuck in the queue
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
