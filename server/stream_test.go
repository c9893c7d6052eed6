package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelserver/modelserver/tensor"
)

// stepper is a fake streaming model: it emits k[0] chunks, chunk i holding
// y = x*(i+1) and s = i. Before each chunk after the first it waits for a
// value on gate (when gate is set), so tests control the pace.
type stepper struct {
	gate    chan struct{}
	mu      sync.Mutex
	stopErr error // what the last Stream returned
	done    chan struct{}
}

func newStepper(gated bool) *stepper {
	s := &stepper{done: make(chan struct{}, 16)}
	if gated {
		s.gate = make(chan struct{})
	}
	return s
}

func (st *stepper) Stream(ctx context.Context, in map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) (err error) {
	defer func() {
		st.mu.Lock()
		st.stopErr = err
		st.mu.Unlock()
		st.done <- struct{}{}
	}()
	x, k := in["x"], in["k"]
	n := int(binary.LittleEndian.Uint64(k.Data))
	for i := range n {
		if i > 0 && st.gate != nil {
			select {
			case <-st.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		y := make([]byte, len(x.Data))
		for j := 0; j < len(y); j += 4 {
			v := f32(x.Data[j:])
			copy(y[j:], f32bytes(v*float32(i+1)))
		}
		s := make([]byte, 8*k.Shape[0])
		binary.LittleEndian.PutUint64(s, uint64(i))
		if err := emit(map[string]tensor.Tensor{
			"y": {DType: tensor.Float32, Shape: x.Shape, Data: y},
			"s": {DType: tensor.Int64, Shape: k.Shape, Data: s},
		}); err != nil {
			return err
		}
	}
	return nil
}

func (st *stepper) lastErr() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.stopErr
}

func f32(b []byte) float32 {
	var v float32
	binary.Decode(b, binary.LittleEndian, &v)
	return v
}

func newStreamServer(t *testing.T, st *stepper, opts Options) (*Server, string) {
	t.Helper()
	s := New(opts)
	s.SetReady(Model{Signature: doublerSignature, Streamer: st})
	ts := newHTTPTestServer(t, s)
	return s, ts
}

func streamRequest(t *testing.T, url, accept, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", url+"/v1/models/model:predict", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestStreamChunkByChunk(t *testing.T) {
	st := newStepper(true)
	_, url := newStreamServer(t, st, Options{})
	resp := streamRequest(t, url, "", `{"x": [[1, 2]], "k": [3]}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/octet-stream" || resp.ContentLength != -1 {
		t.Fatalf("stream answered %d %q length %d", resp.StatusCode, resp.Header.Get("Content-Type"), resp.ContentLength)
	}
	lines := bufio.NewReader(resp.Body)
	for i := range 3 {
		// Each chunk must arrive before the producer is allowed to make
		// the next one: nothing is buffered until the end.
		line, err := lines.ReadString('\n')
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		checkChunk(t, i, []byte(line))
		if i < 2 {
			st.gate <- struct{}{}
		}
	}
	if rest, _ := io.ReadAll(lines); len(rest) != 0 {
		t.Errorf("trailing bytes after the last chunk: %q", rest)
	}
}

func TestStreamSSEAndGathered(t *testing.T) {
	_, url := newStreamServer(t, newStepper(false), Options{})
	resp := streamRequest(t, url, "text/event-stream", `{"x": [[1, 2]], "k": [2]}`)
	body, _ := io.ReadAll(resp.Body)
	events := strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n")
	if resp.Header.Get("Content-Type") != "text/event-stream" || len(events) != 2 {
		t.Fatalf("SSE = %q %q, want 2 events", resp.Header.Get("Content-Type"), body)
	}
	for i, ev := range events {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("event %d = %q, want one data line", i, ev)
		}
		checkChunk(t, i, []byte(data))
	}

	resp = streamRequest(t, url, "application/json", `{"x": [[1, 2]], "k": [2]}`)
	body, _ = io.ReadAll(resp.Body)
	var chunks []json.RawMessage
	if err := json.Unmarshal(body, &chunks); err != nil || len(chunks) != 2 || resp.ContentLength != int64(len(body)) {
		t.Fatalf("gathered = %q (%v), want a JSON array of 2 chunks with a Content-Length", body, err)
	}
	for i, c := range chunks {
		checkChunk(t, i, c)
	}
}

// checkChunk checks chunk i of the stepper's answer to x = [[1, 2]].
func checkChunk(t *testing.T, i int, data []byte) {
	t.Helper()
	var chunk struct {
		Y [][]float64
		S []int64
	}
	if err := json.Unmarshal(data, &chunk); err != nil {
		t.Fatalf("chunk %d %q: %v", i, data, err)
	}
	if len(chunk.Y) != 1 || chunk.Y[0][0] != float64(i+1) || chunk.Y[0][1] != float64(2*(i+1)) || chunk.S[0] != int64(i) {
		t.Errorf("chunk %d = %+v", i, chunk)
	}
}

// TestStreamStopsWhenClientLeaves: a client that leaves a stream midway
// stops its producer and is counted as 499, although its 200 was sent.
func TestStreamStopsWhenClientLeaves(t *testing.T) {
	st := newStepper(true)
	s, url := newStreamServer(t, st, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/models/model:predict", strings.NewReader(`{"x": [[1, 2]], "k": [1000]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-st.done:
	case <-time.After(10 * time.Second):
		t.Fatal("producer still running 10 s after the client left")
	}
	if err := st.lastErr(); !errors.Is(err, context.Canceled) {
		t.Errorf("producer stopped with %v, want context.Canceled", err)
	}
	waitFor(t, func() bool {
		return testutil.ToFloat64(s.metrics.requests.WithLabelValues("predict", "499", "cancelled")) == 1
	})
}

func TestStreamStalledIsAborted(t *testing.T) {
	st := newStepper(true) // never released: the second chunk never comes
	_, url := newStreamServer(t, st, Options{StreamingReadTimeout: 50 * time.Millisecond})
	resp := streamRequest(t, url, "", `{"x": [[1, 2]], "k": [2]}`)
	_, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading a stalled stream = %v, want an aborted (unexpected EOF) body", err)
	}
	<-st.done
	if err := st.lastErr(); !errors.Is(err, context.Canceled) {
		t.Errorf("producer stopped with %v, want its context cancelled", err)
	}
}

func TestStreamErrorBeforeFirstChunk(t *testing.T) {
	_, url := newStreamServer(t, newStepper(false), Options{})
	resp := streamRequest(t, url, "", `{"x": [[1, 2]], "k": [1], "bogus": [1]}`)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("invalid streaming request = %d, want 400", resp.StatusCode)
	}
}

func TestStreamCountsInFlightUntilItEnds(t *testing.T) {
	st := newStepper(true)
	s, url := newStreamServer(t, st, Options{})
	resp := streamRequest(t, url, "", `{"x": [[1, 2]], "k": [2]}`)
	lines := bufio.NewReader(resp.Body)
	if _, err := lines.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(s.metrics.inFlight); got != 1 {
		t.Errorf("in flight during the stream = %v, want 1", got)
	}
	st.gate <- struct{}{}
	io.ReadAll(lines)
	waitUntil(t, func() bool { return testutil.ToFloat64(s.metrics.inFlight) == 0 })
}
