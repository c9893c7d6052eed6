package batching_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/onnxgen"
	"github.com/modelserver/modelserver/internal/testort"
	"github.com/modelserver/modelserver/tensor"
)

// requireORT initialises ONNX Runtime; see internal/testort for when a
// missing library skips or fails the test.
func requireORT(tb testing.TB) {
	tb.Helper()
	if err := engine.InitONNXRuntime(testort.Library(tb)); err != nil {
		testort.Unusable(tb, err)
	}
}

func loadONNX(tb testing.TB, gen func() ([]byte, error)) *engine.ONNXModel {
	tb.Helper()
	requireORT(tb)
	data, err := gen()
	if err != nil {
		tb.Fatal(err)
	}
	m, err := engine.LoadONNXBytes(data, engine.ONNXOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// TestONNXEquivalence runs ONNX Runtime's MixedFixture (several dtypes, rows
// independent) through a Batcher under concurrent load and checks that every
// caller gets the same bits as a direct unbatched run of its request.
func TestONNXEquivalence(t *testing.T) {
	m := loadONNX(t, onnxgen.MixedFixture)
	rec := &recorder{}
	b := batching.New(m, batching.WithMaxBatchSize(16), batching.WithObserver(rec), batching.WithPredictConcurrency(2))
	defer b.Close()
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for range 20 {
				rows := int64(rng.IntN(5))
				a := make([]float32, 4*rows)
				ib := make([]int64, 4*rows)
				flag := make([]byte, rows)
				for i := range a {
					a[i], ib[i] = float32(rng.NormFloat64()), rng.Int64N(100)-50
				}
				for i := range flag {
					flag[i] = byte(rng.IntN(2))
				}
				in := map[string]tensor.Tensor{
					"a":    f32([]int64{rows, 4}, a),
					"b":    i64([]int64{rows, 4}, ib),
					"flag": mustTensor(tensor.Bool, []int64{rows, 1}, flag),
				}
				got, err := b.Predict(t.Context(), in)
				if err != nil {
					t.Error(err)
					return
				}
				want, err := m.Run(t.Context(), in)
				if err != nil {
					t.Error(err)
					return
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("batched outputs differ from a direct run (-want +got):\n%s", diff)
					return
				}
			}
		})
	}
	wg.Wait()
	shared := 0
	rec.read(func(r *recorder) {
		for _, be := range r.batches {
			if be.requests > 1 {
				shared++
			}
		}
	})
	if shared == 0 {
		t.Error("no execution held more than one request; batching was not exercised")
	}
}

// BenchmarkMLPThroughput compares rows per second on an MLP of four
// 2048×2048 layers (the server's mlp-large): 64 clients of one row each
// served through a Batcher (max batch 32, default 1ms delay, one execution
// at a time) and unbatched, against calling the model directly with batches
// of 32 rows and of 1 row (one caller, and 64 concurrent callers).
func BenchmarkMLPThroughput(b *testing.B) {
	if testing.Short() {
		b.Skip("generates and runs a 64 MB model")
	}
	m := loadONNX(b, func() ([]byte, error) {
		return onnxgen.MLP(onnxgen.MLPOptions{Seed: 20261124, In: 2048, Hidden: []int{2048, 2048, 2048}, Classes: 2048})
	})
	features := func(rows int) map[string]tensor.Tensor {
		rng := rand.New(rand.NewPCG(1, uint64(rows)))
		v := make([]float32, rows*2048)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return map[string]tensor.Tensor{"features": f32([]int64{int64(rows), 2048}, v)}
	}
	ctx := context.Background()
	report := func(b *testing.B, rows int64) {
		b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/row")
	}
	for _, n := range []int{32, 1} {
		b.Run(fmt.Sprintf("direct/batch=%d/clients=1", n), func(b *testing.B) {
			in := features(n)
			var rows int64
			for b.Loop() {
				if _, err := m.Run(ctx, in); err != nil {
					b.Fatal(err)
				}
				rows += int64(n)
			}
			report(b, rows)
		})
	}
	parallel64 := func(b *testing.B, predict func(context.Context, map[string]tensor.Tensor) (map[string]tensor.Tensor, error)) {
		in := features(1)
		var rows atomic.Int64
		b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := predict(ctx, in); err != nil {
					b.Error(err)
					return
				}
				rows.Add(1)
			}
		})
		report(b, rows.Load())
	}
	b.Run("direct/batch=1/clients=64", func(b *testing.B) { parallel64(b, m.Run) })
	for _, maxBatch := range []int{32, 0} {
		b.Run(fmt.Sprintf("served/max_batch=%d/clients=64", maxBatch), func(b *testing.B) {
			rec := &recorder{}
			bt := batching.New(m, batching.WithMaxBatchSize(maxBatch), batching.WithMaxQueueSize(256), batching.WithObserver(rec))
			defer bt.Close()
			parallel64(b, bt.Predict)
			var rows, execs int
			rec.read(func(r *recorder) {
				for _, be := range r.batches {
					rows += be.rows
				}
				execs = len(r.batches)
			})
			if execs > 0 {
				b.ReportMetric(float64(rows)/float64(execs), "rows/exec")
			}
		})
	}
}
