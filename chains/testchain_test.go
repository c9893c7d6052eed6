package chains_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/modelserver/modelserver/chains"
	"github.com/modelserver/modelserver/tensor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The test Chain: Top (entrypoint) → Mid → Leaf, Mid calling Leaf in binary
// mode with 3 attempts.

type LeafInput struct {
	Value int           `json:"value"`
	Array tensor.Tensor `json:"array"`
	Fail  string        `json:"fail,omitempty"`
}

type LeafOutput struct {
	Doubled        tensor.Tensor `json:"doubled"`
	Value          int           `json:"value"`
	TraceParent    string        `json:"traceparent"`
	RequestID      string        `json:"request_id"`
	ChainRequestID string        `json:"chain_request_id"`
}

type Leaf struct {
	FailFirst int64
	calls     atomic.Int64
}

func (l *Leaf) RunRemote(ctx context.Context, in LeafInput) (LeafOutput, error) {
	n := l.calls.Add(1)
	switch in.Fail {
	case "transient":
		if n <= l.FailFirst {
			return LeafOutput{}, chains.HTTPError(http.StatusServiceUnavailable, "transient")
		}
	case "value":
		return LeafOutput{}, checkValue(in.Value)
	case "panic":
		var m map[string]int
		m["boom"] = 1 // a nil map write panics
	case "plain":
		return LeafOutput{}, errors.New("plain Go error")
	}
	doubled, err := scale(in.Array, 2)
	if err != nil {
		return LeafOutput{}, err
	}
	h := chains.ForwardedHeaders(ctx)
	return LeafOutput{
		Doubled: doubled, Value: in.Value * 2,
		TraceParent: h.Get(chains.HeaderTraceParent), RequestID: h.Get(chains.HeaderRequestID), ChainRequestID: h.Get(chains.HeaderChainRequestID),
	}, nil
}

func checkValue(v int) error {
	return chains.ValueError("value %d is too large", v)
}

type MidInput struct {
	Value int           `json:"value"`
	Array tensor.Tensor `json:"array"`
	Fail  string        `json:"fail,omitempty"`
}

type Mid struct {
	Leaf chains.Dep[LeafInput, LeafOutput] `chains:"Leaf,retries=3,binary"`
}

func (m *Mid) RunRemote(ctx context.Context, in MidInput) (LeafOutput, error) {
	return m.Leaf.RunRemote(ctx, LeafInput(in))
}

type Top struct {
	chains.Entrypoint
	Mid chains.Dep[MidInput, LeafOutput] `chains:"Mid"`
}

func (t *Top) RunRemote(ctx context.Context, in MidInput) (LeafOutput, error) {
	return t.Mid.RunRemote(ctx, in)
}

func float32s(vals ...float32) tensor.Tensor {
	data := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
	}
	t, err := tensor.New(tensor.Float32, []int64{int64(len(vals))}, data)
	if err != nil {
		panic(err)
	}
	return t
}

func floatsOf(t tensor.Tensor) []float32 {
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out
}

func scale(t tensor.Tensor, k float32) (tensor.Tensor, error) {
	if t.DType != tensor.Float32 {
		return tensor.Tensor{}, chains.ValueError("array must be float32, got %s", t.DType)
	}
	vals := floatsOf(t)
	for i := range vals {
		vals[i] *= k
	}
	out := float32s(vals...)
	out.Shape = t.Shape
	return out, nil
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// servedChain serves every Go Chainlet of chainlets on its own loopback
// listener, as separate Chainlet servers would run, and returns their
// predict endpoints. Everything stops when the test ends.
func servedChain(t *testing.T, chainlets []any, extra map[string]chains.Endpoint, apiKey string) map[string]chains.Endpoint {
	t.Helper()
	c, err := chains.New(chainlets...)
	if err != nil {
		t.Fatal(err)
	}
	endpoints := map[string]chains.Endpoint{}
	for k, v := range extra {
		endpoints[k] = v
	}
	listeners := map[string]net.Listener{}
	for _, cl := range chainlets {
		if _, ok := cl.(chains.ModelChainlet); ok {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		name := typeName(cl)
		listeners[name] = ln
		endpoints[name] = chains.Endpoint{URL: "http://" + ln.Addr().String() + chains.PredictPath}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for name, ln := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Serve(ctx, ln, chains.ServeOptions{Chainlet: name, Endpoints: endpoints, APIKey: apiKey, Logger: quietLogger(), ShutdownGrace: 5 * time.Second})
			if err != nil {
				t.Errorf("Serve(%s): %v", name, err)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		http.DefaultClient.CloseIdleConnections()
	})
	return endpoints
}

func typeName(v any) string {
	switch v.(type) {
	case *Top:
		return "Top"
	case *Mid:
		return "Mid"
	case *Leaf:
		return "Leaf"
	case *Proxy:
		return "Proxy"
	case *Streamer:
		return "Streamer"
	case *StreamCaller:
		return "StreamCaller"
	case *Words:
		return "Words"
	}
	panic("unknown test Chainlet")
}

// client returns a client of a served Chainlet, closing its connections
// when the test ends.
func client[In, Out any](t *testing.T, name string, ep chains.Endpoint, opts chains.DepOptions) *chains.Dep[In, Out] {
	d := chains.NewClient[In, Out](name, ep, opts, "")
	t.Cleanup(d.CloseIdleConnections)
	return &d
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
