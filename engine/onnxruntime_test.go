package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/modelserver/modelserver/internal/onnxgen"
	"github.com/modelserver/modelserver/internal/testort"
	"github.com/modelserver/modelserver/tensor"
)

// requireORT initialises ONNX Runtime for a test (see testort).
func requireORT(t testing.TB) {
	t.Helper()
	if err := InitONNXRuntime(testort.Library(t)); err != nil {
		t.Fatal(err)
	}
}

func loadFixture(t testing.TB, gen func() ([]byte, error)) *ONNXModel {
	t.Helper()
	requireORT(t)
	data, err := gen()
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadONNXBytes(data, ONNXOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestInitErrors(t *testing.T) {
	for _, path := range []string{"/nonexistent/libonnxruntime.so", t.TempDir()} {
		if err := initONNXRuntime(path); !errors.Is(err, ErrRuntimeLibrary) {
			t.Errorf("initONNXRuntime(%q) = %v, want ErrRuntimeLibrary", path, err)
		}
	}
}

func TestONNXSignature(t *testing.T) {
	m := loadFixture(t, onnxgen.MixedFixture)
	sig := m.Signature()
	got := map[string]TensorSpec{}
	for _, s := range append(append([]TensorSpec{}, sig.Inputs...), sig.Outputs...) {
		got[s.Name] = s
	}
	want := map[string]TensorSpec{
		"a":         {Name: "a", DType: tensor.Float32, Shape: []int64{DynamicDim, 4}, DimNames: []string{"batch", ""}},
		"b":         {Name: "b", DType: tensor.Int64, Shape: []int64{DynamicDim, 4}, DimNames: []string{"batch", ""}},
		"flag":      {Name: "flag", DType: tensor.Bool, Shape: []int64{DynamicDim, 1}, DimNames: []string{"batch", ""}},
		"sum":       {Name: "sum", DType: tensor.Float32, Shape: []int64{DynamicDim, 4}, DimNames: []string{"batch", ""}},
		"row_total": {Name: "row_total", DType: tensor.Int64, Shape: []int64{DynamicDim}, DimNames: []string{"batch"}},
		"positive":  {Name: "positive", DType: tensor.Bool, Shape: []int64{DynamicDim, 4}, DimNames: []string{"batch", ""}},
		"scaled":    {Name: "scaled", DType: tensor.Float64, Shape: []int64{DynamicDim, 4}, DimNames: []string{"batch", ""}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("signature mismatch (-want +got):\n%s", diff)
	}
}

func TestRunMixed(t *testing.T) {
	m := loadFixture(t, onnxgen.MixedFixture)
	a := []float32{1.5, -2, 0, 3, -1, 4, 2.25, -0.5}
	b := []int64{1, 2, 3, 4, -5, 6, 7, 1 << 40}
	flag := []bool{true, false}
	out, err := m.Run(context.Background(), map[string]tensor.Tensor{
		"a":    mk(tensor.Float32, []int64{2, 4}, a),
		"b":    mk(tensor.Int64, []int64{2, 4}, b),
		"flag": mk(tensor.Bool, []int64{2, 1}, flag),
	})
	if err != nil {
		t.Fatal(err)
	}
	sum, scaled, positive := make([]float32, 8), make([]float64, 8), make([]bool, 8)
	for i := range a {
		sum[i] = a[i] + float32(b[i])
		scaled[i] = float64(a[i]) * 2.5
		positive[i] = a[i] > 0 && flag[i/4]
	}
	wants := map[string]tensor.Tensor{
		"sum":       mk(tensor.Float32, []int64{2, 4}, sum),
		"row_total": mk(tensor.Int64, []int64{2}, []int64{10, 1<<40 + 8}),
		"positive":  mk(tensor.Bool, []int64{2, 4}, positive),
		"scaled":    mk(tensor.Float64, []int64{2, 4}, scaled),
	}
	for name, want := range wants {
		if got := out[name]; !cmp.Equal(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) || got.DType != want.DType {
			t.Errorf("%s = %v %v %v, want %v %v %v", name, got.DType, got.Shape, got.Data, want.DType, want.Shape, want.Data)
		}
	}
}

// TestRunEveryDType runs the identity model: every dtype, including the
// ones the binding cannot copy itself, a 0-d scalar and zero-size tensors.
func TestRunEveryDType(t *testing.T) {
	m := loadFixture(t, onnxgen.IdentityAllDTypes)
	for _, rows := range []int64{3, 0} {
		inputs := map[string]tensor.Tensor{}
		for i, spec := range m.Signature().Inputs {
			shape := []int64{rows, 2}
			if len(spec.Shape) == 0 {
				shape = nil
			}
			size, err := tensor.ByteSize(spec.DType, shape)
			if err != nil {
				t.Fatal(err)
			}
			data := make([]byte, size)
			for j := range data {
				data[j] = byte(j*7 + i)
				if spec.DType == tensor.Bool {
					data[j] &= 1
				}
			}
			inputs[spec.Name] = tensor.Tensor{DType: spec.DType, Shape: shape, Data: data}
		}
		out, err := m.Run(context.Background(), inputs)
		if err != nil {
			t.Fatalf("rows %d: %v", rows, err)
		}
		for name, in := range inputs {
			got := out["y"+name[1:]]
			if got.DType != in.DType || !cmp.Equal(got.Shape, in.Shape, cmp.Comparer(func(a, b []int64) bool { return len(a) == len(b) && (len(a) == 0 || cmp.Equal(a, b)) })) || !bytes.Equal(got.Data, in.Data) {
				t.Errorf("rows %d: %s: got %v %v % x, want %v %v % x", rows, name, got.DType, got.Shape, got.Data, in.DType, in.Shape, in.Data)
			}
		}
	}
}

func TestRuntimeFailureKeepsServing(t *testing.T) {
	m := loadFixture(t, onnxgen.ReshapeFixture)
	x := mk(tensor.Float32, []int64{6}, []float32{1, 2, 3, 4, 5, 6})
	_, err := m.Run(context.Background(), map[string]tensor.Tensor{"x": x, "shape": mk(tensor.Int64, []int64{2}, []int64{4, 4})})
	if !errors.Is(err, ErrRuntime) {
		t.Fatalf("impossible reshape = %v, want ErrRuntime", err)
	}
	out, err := m.Run(context.Background(), map[string]tensor.Tensor{"x": x, "shape": mk(tensor.Int64, []int64{2}, []int64{3, 2})})
	if err != nil || !cmp.Equal(out["y"].Shape, []int64{3, 2}) {
		t.Fatalf("reshape after a failure = %v, %v", out, err)
	}
}

func TestRunCancelled(t *testing.T) {
	m := loadFixture(t, onnxgen.MixedFixture)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := m.Run(ctx, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context = %v, want context.Canceled", err)
	}
}

func mk[T bool | int64 | float32 | float64](dt tensor.DType, shape []int64, vs []T) tensor.Tensor {
	var buf bytes.Buffer
	for _, v := range vs {
		switch x := any(v).(type) {
		case float32:
			binary.Write(&buf, binary.LittleEndian, math.Float32bits(x))
		default:
			binary.Write(&buf, binary.LittleEndian, x)
		}
	}
	return tensor.Tensor{DType: dt, Shape: shape, Data: buf.Bytes()}
}
