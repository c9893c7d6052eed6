package batching_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/tensor"
)

// noopModel returns its input as its output: no work, so a benchmark
// through a Batcher measures the Batcher.
type noopModel struct{ sig engine.Signature }

func (m noopModel) Signature() engine.Signature { return m.sig }
func (m noopModel) Close() error                { return nil }
func (m noopModel) Run(_ context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	return map[string]tensor.Tensor{"y": in["x"]}, nil
}

// BenchmarkBatcherOverhead measures the per-request cost of going through a
// Batcher to a model that does nothing, with one client and with 64
// concurrent clients, each sending one row of 16 float32: "direct" calls the
// model itself; "unbatched" runs one request per execution; "batched" lets
// up to 32 requests share one (no queue delay). ns/op is per request.
func BenchmarkBatcherOverhead(b *testing.B) {
	sig := engine.Signature{
		Inputs:  []engine.TensorSpec{{Name: "x", DType: tensor.Float32, Shape: []int64{dyn, 16}, DimNames: []string{"batch", ""}}},
		Outputs: []engine.TensorSpec{{Name: "y", DType: tensor.Float32, Shape: []int64{dyn, 16}, DimNames: []string{"batch", ""}}},
	}
	m := noopModel{sig}
	input := map[string]tensor.Tensor{"x": f32([]int64{1, 16}, make([]float32, 16))}
	modes := []struct {
		name string
		opts []batching.Option // nil: call the model directly
	}{
		{"direct", nil},
		{"unbatched", []batching.Option{batching.WithMaxBatchSize(0)}},
		{"batched", []batching.Option{batching.WithMaxBatchSize(32), batching.WithMaxQueueDelay(0)}},
	}
	for _, clients := range []int{1, 64} {
		for _, mode := range modes {
			b.Run(fmt.Sprintf("clients=%d/%s", clients, mode.name), func(b *testing.B) {
				predict := m.Run
				if mode.opts != nil {
					bt := batching.New(m, append(mode.opts, batching.WithMaxQueueSize(1024))...)
					defer bt.Close()
					predict = bt.Predict
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				b.ReportAllocs()
				if clients == 1 {
					for b.Loop() {
						if _, err := predict(ctx, input); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := predict(ctx, input); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
