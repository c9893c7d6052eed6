package onnxgen

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/modelserver/modelserver/internal/onnxpb"
	"github.com/modelserver/modelserver/tensor"
)

// attrModel uses every attribute helper: Transpose (Ints), Einsum (String),
// LeakyRelu (Float) and Flatten (Int).
func attrModel() *Builder {
	b := NewBuilder("attrs", 17)
	b.Input("x", tensor.Float32, Fixed(2), Fixed(3))
	b.Node("Transpose", []string{"x"}, []string{"t"}, Ints("perm", 1, 0))
	b.Node("Einsum", []string{"t"}, []string{"back"}, String("equation", "ij->ji"))
	b.Node("LeakyRelu", []string{"back"}, []string{"leaky"}, Float("alpha", 0.25))
	b.Node("Flatten", []string{"leaky"}, []string{"y"}, Int("axis", 0))
	b.Output("y", tensor.Float32, Fixed(1), Fixed(6))
	return b
}

func TestBuilderAttributesReachTheRuntime(t *testing.T) {
	model, err := attrModel().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	m := loadModel(t, model)
	x := []float32{1, -2, 3, -4, 0.5, -8}
	outs := m.mustRun(t, map[string]ort.Value{"x": newTensor(t, []int64{2, 3}, slices.Clone(x))})
	want := []float32{1, -0.5, 3, -1, 0.5, -2}
	if y := outputData[float32](t, outs, "y", 1, 6); !slices.Equal(y, want) {
		t.Errorf("y = %v, want %v", y, want)
	}
}

// TestBuilderEncoding checks the protobuf the Builder writes, field by field,
// where the runtime would not notice a mistake (a rank-0 shape written as "no
// shape", a lost symbolic name).
func TestBuilderEncoding(t *testing.T) {
	b := NewBuilder("enc", 13)
	b.Input("x", tensor.Float16, Sym("batch"), Fixed(0), Fixed(7))
	b.Input("s", tensor.Bool)
	b.Initializer("w", tensor.Tensor{DType: tensor.Int16, Shape: []int64{2}, Data: []byte{1, 2, 3, 4}})
	b.Node("Identity", []string{"x"}, []string{"y"}, Int("unused", 0))
	b.Output("y", tensor.Float16, Sym("batch"), Fixed(0), Fixed(7))
	data, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.GetIrVersion() != IRVersion || len(m.GetOpsetImport()) != 1 || m.GetOpsetImport()[0].GetVersion() != 13 || m.GetOpsetImport()[0].GetDomain() != "" {
		t.Errorf("IR version %d, opsets %v", m.GetIrVersion(), m.GetOpsetImport())
	}
	g := m.GetGraph()
	if g.GetName() != "enc" {
		t.Errorf("graph name %q", g.GetName())
	}
	x := g.GetInput()[0].GetType().GetTensorType()
	if x.GetElemType() != int32(onnxpb.TensorProto_FLOAT16) {
		t.Errorf("x has element type %d", x.GetElemType())
	}
	dims := x.GetShape().GetDim()
	if len(dims) != 3 || dims[0].GetDimParam() != "batch" || dims[1].GetValue() == nil || dims[1].GetDimValue() != 0 || dims[2].GetDimValue() != 7 {
		t.Errorf("x has dims %v", dims)
	}
	if s := g.GetInput()[1].GetType().GetTensorType(); s.GetShape() == nil || len(s.GetShape().GetDim()) != 0 {
		t.Errorf("the 0-d input s has shape %v, want an empty one", s.GetShape())
	}
	w := g.GetInitializer()[0]
	if w.GetName() != "w" || w.GetDataType() != int32(onnxpb.TensorProto_INT16) || !slices.Equal(w.GetDims(), []int64{2}) || string(w.GetRawData()) != "\x01\x02\x03\x04" {
		t.Errorf("initializer %v", w)
	}
	if len(g.GetInput()) != 2 {
		t.Errorf("initializers are listed as inputs: %v", g.GetInput())
	}
	n := g.GetNode()[0]
	if n.GetOpType() != "Identity" || n.GetDomain() != "" || n.GetAttribute()[0].GetType() != onnxpb.AttributeProto_INT {
		t.Errorf("node %v", n)
	}
}

func TestBuilderCopiesCallerData(t *testing.T) {
	b := NewBuilder("copy", 17)
	data := []byte{1, 2, 3, 4}
	b.Initializer("w", tensor.Tensor{DType: tensor.Float32, Shape: []int64{1}, Data: data})
	b.Node("Identity", []string{"w"}, []string{"y"})
	b.Output("y", tensor.Float32, Fixed(1))
	before, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	data[0] = 99
	after, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Error("changing the initializer's data after Initializer changed the model")
	}
}

func TestBuilderRejectsMisuse(t *testing.T) {
	f32 := func(n int) tensor.Tensor {
		return tensor.Tensor{DType: tensor.Float32, Shape: []int64{int64(n)}, Data: make([]byte, 4*n)}
	}
	tests := []struct {
		name  string
		build func(b *Builder)
		want  string
	}{
		{"duplicate input", func(b *Builder) {
			b.Input("x", tensor.Float32)
			b.Input("x", tensor.Float32)
		}, `input "x": the name is already defined`},
		{"initializer named like an input", func(b *Builder) {
			b.Input("x", tensor.Float32)
			b.Initializer("x", f32(1))
		}, `initializer "x": the name is already defined`},
		{"node output named like an input", func(b *Builder) {
			b.Input("x", tensor.Float32)
			b.Node("Relu", []string{"x"}, []string{"x"})
		}, `output "x": the name is already defined`},
		{"two nodes with one output", func(b *Builder) {
			b.Input("x", tensor.Float32)
			b.Node("Relu", []string{"x"}, []string{"y"})
			b.Node("Neg", []string{"x"}, []string{"y"})
		}, `output "y": the name is already defined`},
		{"duplicate output", func(b *Builder) {
			b.Input("x", tensor.Float32)
			b.Output("x", tensor.Float32)
			b.Output("x", tensor.Float32)
		}, `output "x": empty or already declared`},
		{"empty input name", func(b *Builder) { b.Input("", tensor.Float32) }, "input with an empty name"},
		{"invalid input dtype", func(b *Builder) { b.Input("x", tensor.Invalid) }, "invalid dtype"},
		{"unknown input dtype", func(b *Builder) { b.Input("x", tensor.DType(200)) }, "invalid dtype dtype(200)"},
		{"unknown output dtype", func(b *Builder) { b.Output("y", tensor.DType(200)) }, "invalid dtype"},
		{"unknown initializer dtype", func(b *Builder) {
			b.Initializer("w", tensor.Tensor{DType: tensor.DType(200), Data: []byte{0}})
		}, "invalid dtype"},
		{"initializer data of the wrong size", func(b *Builder) {
			b.Initializer("w", tensor.Tensor{DType: tensor.Float32, Shape: []int64{2}, Data: make([]byte, 4)})
		}, "needs 8"},
		{"negative dimension", func(b *Builder) { b.Input("x", tensor.Float32, Fixed(-1)) }, "negative size"},
		{"unnamed symbolic dimension", func(b *Builder) { b.Input("x", tensor.Float32, Fixed(2), Sym("")) }, "symbolic dimension 1 has an empty name"},
		{"undefined node input", func(b *Builder) { b.Node("Relu", []string{"nowhere"}, []string{"y"}) }, `input "nowhere" is not defined`},
		{"node input used before its node", func(b *Builder) {
			b.Input("x", tensor.Float32)
			b.Node("Relu", []string{"later"}, []string{"y"})
			b.Node("Neg", []string{"x"}, []string{"later"})
		}, `input "later" is not defined`},
		{"node without outputs", func(b *Builder) { b.Node("Relu", nil, nil) }, "at least one output"},
		{"node without op", func(b *Builder) {
			b.Input("x", tensor.Float32)
			b.Node("", []string{"x"}, []string{"y"})
		}, "needs an op type"},
		{"attribute given twice", func(b *Builder) {
			b.Input("x", tensor.Float32)
			b.Node("Softmax", []string{"x"}, []string{"y"}, Int("axis", 0), Int("axis", 1))
		}, "given twice"},
		{"zero attribute", func(b *Builder) {
			b.Input("x", tensor.Float32)
			b.Node("Softmax", []string{"x"}, []string{"y"}, Attr{})
		}, "attribute without a name"},
		{"output nothing produces", func(b *Builder) {
			b.Input("x", tensor.Float32)
			b.Output("y", tensor.Float32)
		}, `output "y" is not produced`},
		{"no outputs", func(b *Builder) { b.Input("x", tensor.Float32) }, "has no outputs"},
		{"node of a domain not imported", func(b *Builder) {
			b.Input("x", tensor.Float32)
			b.DomainNode("com.microsoft", "Gelu", []string{"x"}, []string{"y"})
		}, `domain "com.microsoft" is not imported`},
		{"domain imported twice", func(b *Builder) {
			b.ImportDomain("com.microsoft", 1)
			b.ImportDomain("com.microsoft", 1)
		}, "one import"},
		{"default domain imported", func(b *Builder) { b.ImportDomain("", 1) }, "needs a name"},
		{"domain version 0", func(b *Builder) { b.ImportDomain("com.microsoft", 0) }, "positive version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuilder("bad", 17)
			tt.build(b)
			_, err := b.Bytes()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Bytes() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestBuilderReportsFirstError(t *testing.T) {
	b := NewBuilder("first", 0)
	b.Input("x", tensor.DType(200))
	b.Input("y", tensor.Float32)
	b.Output("y", tensor.Float32)
	_, err := b.Bytes()
	if err == nil || !strings.Contains(err.Error(), "opset 0") {
		t.Errorf("Bytes() error = %v, want the first mistake, opset 0", err)
	}
}

func TestBuilderAllowsOmittedOptionalValues(t *testing.T) {
	// Clip's min is optional: "" leaves it out.
	b := NewBuilder("clip", 17)
	b.Input("x", tensor.Float32, Sym("n"))
	b.Initializer("hi", tensor.Tensor{DType: tensor.Float32, Data: []byte{0, 0, 0x80, 0x3f}}) // 1.0
	b.Node("Clip", []string{"x", "", "hi"}, []string{"y"})
	b.Output("y", tensor.Float32, Sym("n"))
	model, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	m := loadModel(t, model)
	outs := m.mustRun(t, map[string]ort.Value{"x": newTensor(t, []int64{3}, []float32{-5, 0.5, 5})})
	if y := outputData[float32](t, outs, "y", 3); !slices.Equal(y, []float32{-5, 0.5, 1}) {
		t.Errorf("y = %v, want [-5 0.5 1]", y)
	}
}

// TestBuilderDomainAndExternalData builds a graph with a com.microsoft
// operator and its weights in an external data file, checks the encoding
// (opset imports, external data entries at aligned offsets, small tensors
// inline) and runs it from a directory.
func TestBuilderDomainAndExternalData(t *testing.T) {
	const n = 300 // 1200 bytes of float32: external at a 1024-byte threshold
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(i) / 100
	}
	b := NewBuilder("external", 17)
	b.ImportDomain("com.microsoft", 1)
	b.Input("x", tensor.Float32, Fixed(n))
	b.Initializer("w", float32Tensor([]int64{n}, w))
	b.Initializer("w2", float32Tensor([]int64{n}, w))
	b.Initializer("small", float32Tensor([]int64{1}, []float32{1}))
	b.Node("Mul", []string{"x", "w"}, []string{"xw"})
	b.Node("Mul", []string{"xw", "small"}, []string{"xws"})
	b.DomainNode("com.microsoft", "FastGelu", []string{"xws"}, []string{"g"})
	b.Node("Add", []string{"g", "w2"}, []string{"y"})
	b.Output("y", tensor.Float32, Fixed(n))
	var data bytes.Buffer
	model, err := b.BytesExternal("weights.bin", &data, 1024)
	if err != nil {
		t.Fatal(err)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(model, &m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetOpsetImport(); len(got) != 2 || got[1].GetDomain() != "com.microsoft" || got[1].GetVersion() != 1 {
		t.Errorf("opset imports %v", got)
	}
	wantOffsets := map[string]string{"w": "0", "w2": "4096"}
	for _, init := range m.GetGraph().GetInitializer() {
		entries := map[string]string{}
		for _, e := range init.GetExternalData() {
			entries[e.GetKey()] = e.GetValue()
		}
		if init.GetName() == "small" {
			if init.GetDataLocation() != onnxpb.TensorProto_DEFAULT || len(init.GetRawData()) != 4 {
				t.Errorf("small initializer %v is not inline", init)
			}
			continue
		}
		if init.GetDataLocation() != onnxpb.TensorProto_EXTERNAL || len(init.GetRawData()) != 0 ||
			entries["location"] != "weights.bin" || entries["offset"] != wantOffsets[init.GetName()] || entries["length"] != "1200" {
			t.Errorf("initializer %q: location %v, entries %v", init.GetName(), init.GetDataLocation(), entries)
		}
	}
	if data.Len() != 4096+4*n {
		t.Errorf("data file of %d bytes, want %d", data.Len(), 4096+4*n)
	}
	if inline, err := b.Bytes(); err != nil || len(inline) < 8*n {
		t.Errorf("Bytes after BytesExternal: %d bytes, %v; want the weights inline", len(inline), err)
	}

	requireORT(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), model, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), data.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	session, err := ort.NewDynamicAdvancedSession(filepath.Join(dir, "model.onnx"), []string{"x"}, []string{"y"}, nil)
	if err != nil {
		t.Fatalf("loading from the directory: %v", err)
	}
	defer session.Destroy()
	x := make([]float32, n)
	for i := range x {
		x[i] = 1
	}
	in := newTensor(t, []int64{n}, x)
	defer in.Destroy()
	out := []ort.Value{nil}
	if err := session.Run([]ort.Value{in}, out); err != nil {
		t.Fatal(err)
	}
	defer out[0].Destroy()
	y := out[0].(*ort.Tensor[float32]).GetData()
	for _, i := range []int{0, 150, n - 1} {
		v := float64(w[i])
		gelu := v / (1 + math.Exp(-1.702*v)) // FastGelu is within 0.02 of x·sigmoid(1.702x)
		if d := math.Abs(float64(y[i]) - (gelu + v)); d > 0.03 {
			t.Errorf("y[%d] = %g, want about %g", i, y[i], gelu+v)
		}
	}
}
