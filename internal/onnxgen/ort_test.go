package onnxgen

import (
	"math"
	"sync"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelserver/modelserver/internal/testort"
)

var ortEnv struct {
	once sync.Once
	err  error
}

// requireORT initialises ONNX Runtime once per test binary (see testort).
func requireORT(t testing.TB) {
	t.Helper()
	path := testort.Library(t)
	ortEnv.once.Do(func() {
		ort.SetSharedLibraryPath(path)
		ortEnv.err = ort.InitializeEnvironment(ort.WithLogLevelError())
	})
	if ortEnv.err != nil {
		testort.Unusable(t, ortEnv.err)
	}
}

// loadedModel is a model loaded by ONNX Runtime with every input and output
// bound, in the order the runtime reports them.
type loadedModel struct {
	session       *ort.DynamicAdvancedSession
	inputs        []ort.InputOutputInfo
	outputs       []ort.InputOutputInfo
	inIdx, outIdx map[string]int
}

func loadModel(t *testing.T, model []byte) *loadedModel {
	t.Helper()
	requireORT(t)
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(model)
	if err != nil {
		t.Fatalf("ONNX Runtime rejects the model: %v", err)
	}
	m := &loadedModel{inputs: ins, outputs: outs, inIdx: make(map[string]int), outIdx: make(map[string]int)}
	var inNames, outNames []string
	for i, in := range ins {
		inNames = append(inNames, in.Name)
		m.inIdx[in.Name] = i
	}
	for i, out := range outs {
		outNames = append(outNames, out.Name)
		m.outIdx[out.Name] = i
	}
	m.session, err = ort.NewDynamicAdvancedSessionWithONNXData(model, inNames, outNames, nil)
	if err != nil {
		t.Fatalf("creating a session: %v", err)
	}
	t.Cleanup(func() { m.session.Destroy() })
	return m
}

// info returns what the runtime reports for the input or output name.
func (m *loadedModel) info(t *testing.T, name string) ort.InputOutputInfo {
	t.Helper()
	if i, ok := m.inIdx[name]; ok {
		return m.inputs[i]
	}
	if i, ok := m.outIdx[name]; ok {
		return m.outputs[i]
	}
	t.Fatalf("the runtime reports no input or output %q", name)
	return ort.InputOutputInfo{}
}

// run runs the model. outputs may hold preallocated values by name; the
// runtime allocates the others. All values are destroyed when the test ends.
func (m *loadedModel) run(t *testing.T, inputs, outputs map[string]ort.Value) (map[string]ort.Value, error) {
	t.Helper()
	in := make([]ort.Value, len(m.inputs))
	for name, v := range inputs {
		destroyLater(t, v)
		i, ok := m.inIdx[name]
		if !ok {
			t.Fatalf("the model has no input %q", name)
		}
		in[i] = v
	}
	out := make([]ort.Value, len(m.outputs))
	for name, v := range outputs {
		destroyLater(t, v)
		i, ok := m.outIdx[name]
		if !ok {
			t.Fatalf("the model has no output %q", name)
		}
		out[i] = v
	}
	if err := m.session.Run(in, out); err != nil {
		return nil, err
	}
	result := make(map[string]ort.Value, len(out))
	for i, v := range out {
		if outputs[m.outputs[i].Name] == nil {
			destroyLater(t, v)
		}
		result[m.outputs[i].Name] = v
	}
	return result, nil
}

func (m *loadedModel) mustRun(t *testing.T, inputs map[string]ort.Value) map[string]ort.Value {
	t.Helper()
	out, err := m.run(t, inputs, nil)
	if err != nil {
		t.Fatalf("running the model: %v", err)
	}
	return out
}

func destroyLater(t *testing.T, v ort.Value) {
	t.Cleanup(func() { v.Destroy() })
}

func newTensor[T ort.TensorData](t *testing.T, shape []int64, data []T) *ort.Tensor[T] {
	t.Helper()
	v, err := ort.NewTensor(ort.NewShape(shape...), data)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// outputData returns an output the runtime allocated, after checking its
// element type and shape.
func outputData[T ort.TensorData](t *testing.T, outs map[string]ort.Value, name string, shape ...int64) []T {
	t.Helper()
	v, ok := outs[name].(*ort.Tensor[T])
	if !ok {
		t.Fatalf("output %q is a %T", name, outs[name])
	}
	if !v.GetShape().Equals(ort.NewShape(shape...)) {
		t.Fatalf("output %q has shape %v, want %v", name, v.GetShape(), shape)
	}
	return v.GetData()
}

// sameBits32 reports whether a and b hold the same float32 bit patterns, so
// that NaNs compare equal and -0 differs from +0.
func sameBits32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
