package grpcserver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/onnxgen"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
	"github.com/modelserver/modelserver/tensor"
)

// runPredictor runs every request straight on the model, without batching.
type runPredictor struct{ m engine.Model }

func (p runPredictor) Predict(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	return p.m.Run(ctx, in)
}

// BenchmarkModelInferMLP measures unary ModelInfer latency through loopback
// gRPC on a tiny MLP (16 features, hidden 64 and 64, 4 classes), one row
// per request, with 1 and 64 clients sharing one connection: "direct" runs
// each request on the model as it comes, "batched" goes through a Batcher
// with the server's defaults (max batch 32, 1 ms max queue delay,
// predict_concurrency 1). "ort" is the model's Run alone, in process, for
// reference. p50-µs and p99-µs are per-request latencies.
func BenchmarkModelInferMLP(b *testing.B) {
	requireORT(b)
	data, err := onnxgen.MLP(onnxgen.MLPOptions{Seed: 1, In: 16, Hidden: []int{64, 64}, Classes: 4})
	if err != nil {
		b.Fatal(err)
	}
	m, err := engine.LoadONNXBytes(data, engine.ONNXOptions{IntraOpThreads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	r := rand.New(rand.NewPCG(1, 1)) // fixed seed for deterministic inputs
	features := make([]float32, 16)
	for i := range features {
		features[i] = r.Float32()*2 - 1
	}
	raw := f32Bytes(features...)
	req := &pb.ModelInferRequest{ModelName: "mlp",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{1, 16}}},
		RawInputContents: [][]byte{raw}}
	in := map[string]tensor.Tensor{"features": {DType: tensor.Float32, Shape: []int64{1, 16}, Data: raw}}

	b.Run("ort/conc=1", func(b *testing.B) {
		ctx := context.Background()
		measure(b, 1, func() error {
			_, err := m.Run(ctx, in)
			return err
		})
	})
	variants := []struct {
		name string
		new  func() (Predictor, func())
	}{
		{"direct", func() (Predictor, func()) { return runPredictor{m}, func() {} }},
		{"batched", func() (Predictor, func()) {
			bt := batching.New(m)
			return bt, bt.Close
		}},
	}
	for _, v := range variants {
		for _, conc := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/conc=%d", v.name, conc), func(b *testing.B) {
				p, done := v.new()
				defer done()
				ts := serve(b, Options{}, &Model{Name: "mlp", Signature: m.Signature(), Predictor: p})
				defer ts.close()
				ctx := context.Background()
				call := func() error {
					_, err := ts.client.ModelInfer(ctx, req)
					return err
				}
				for range 100 { // warm up the connection and the runtime
					if err := call(); err != nil {
						b.Fatal(err)
					}
				}
				measure(b, conc, call)
			})
		}
	}
}

// measure runs b.N calls from conc goroutines and reports latency
// percentiles.
func measure(b *testing.B, conc int, call func() error) {
	b.ReportAllocs()
	lat := make([][]time.Duration, conc)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				start := time.Now()
				err := call()
				lat[w] = append(lat[w], time.Since(start))
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
