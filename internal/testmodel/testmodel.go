// Package testmodel gives transport tests one model to serve:
// onnxgen.MixedFixture's signature, a Go reference that computes it, and the
// real fixture on ONNX Runtime behind a Batcher, as the command serves it.
// It is for tests only.
package testmodel

import (
	"context"
	"encoding/binary"
	"math"
	"testing"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/onnxgen"
	"github.com/modelserver/modelserver/internal/testort"
	"github.com/modelserver/modelserver/tensor"
)

// MixedSignature is onnxgen.MixedFixture's signature.
var MixedSignature = engine.Signature{
	Inputs: []engine.TensorSpec{
		{Name: "a", DType: tensor.Float32, Shape: []int64{-1, 4}, DimNames: []string{"batch", ""}},
		{Name: "b", DType: tensor.Int64, Shape: []int64{-1, 4}, DimNames: []string{"batch", ""}},
		{Name: "flag", DType: tensor.Bool, Shape: []int64{-1, 1}, DimNames: []string{"batch", ""}},
	},
	Outputs: []engine.TensorSpec{
		{Name: "sum", DType: tensor.Float32, Shape: []int64{-1, 4}, DimNames: []string{"batch", ""}},
		{Name: "row_total", DType: tensor.Int64, Shape: []int64{-1}, DimNames: []string{"batch"}},
		{Name: "positive", DType: tensor.Bool, Shape: []int64{-1, 4}, DimNames: []string{"batch", ""}},
		{Name: "scaled", DType: tensor.Float64, Shape: []int64{-1, 4}, DimNames: []string{"batch", ""}},
	},
}

// Mixed computes onnxgen.MixedFixture in Go on inputs that fit
// MixedSignature, and returns ctx's error alongside.
func Mixed(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	a, b, flag := in["a"], in["b"], in["flag"]
	rows := a.Shape[0]
	sum := make([]byte, len(a.Data))
	scaled := make([]byte, 2*len(a.Data))
	positive := make([]byte, len(a.Data)/4)
	total := make([]byte, 8*rows)
	for r := range rows {
		var t int64
		for c := range int64(4) {
			i := r*4 + c
			av := math.Float32frombits(binary.LittleEndian.Uint32(a.Data[4*i:]))
			bv := int64(binary.LittleEndian.Uint64(b.Data[8*i:]))
			t += bv
			binary.LittleEndian.PutUint32(sum[4*i:], math.Float32bits(av+float32(bv)))
			binary.LittleEndian.PutUint64(scaled[8*i:], math.Float64bits(float64(av)*2.5))
			if av > 0 && flag.Data[r] != 0 {
				positive[i] = 1
			}
		}
		binary.LittleEndian.PutUint64(total[8*r:], uint64(t))
	}
	return map[string]tensor.Tensor{
		"sum":       {DType: tensor.Float32, Shape: a.Shape, Data: sum},
		"row_total": {DType: tensor.Int64, Shape: []int64{rows}, Data: total},
		"positive":  {DType: tensor.Bool, Shape: a.Shape, Data: positive},
		"scaled":    {DType: tensor.Float64, Shape: a.Shape, Data: scaled},
	}, ctx.Err()
}

// ServeMixed loads the real onnxgen.MixedFixture on ONNX Runtime behind a
// Batcher with default options, closed when the test ends. Without a usable
// runtime the test is skipped or failed as testort decides.
func ServeMixed(tb testing.TB) (engine.Signature, *batching.Batcher) {
	tb.Helper()
	if err := engine.InitONNXRuntime(testort.Library(tb)); err != nil {
		testort.Unusable(tb, err)
	}
	data, err := onnxgen.MixedFixture()
	if err != nil {
		tb.Fatal(err)
	}
	m, err := engine.LoadONNXBytes(data, engine.ONNXOptions{IntraOpThreads: 1})
	if err != nil {
		tb.Fatal(err)
	}
	b := batching.New(m)
	tb.Cleanup(func() {
		b.Close()
		m.Close()
	})
	return m.Signature(), b
}
