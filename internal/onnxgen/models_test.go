package onnxgen

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/modelserver/modelserver/internal/onnxpb"
	"github.com/modelserver/modelserver/tensor"
)

func TestMLPMatchesGoForwardPass(t *testing.T) {
	tests := []MLPOptions{
		{Seed: 20261124, In: 16, Hidden: []int{64, 64}, Classes: 4}, // the server's default model
		{Seed: 3, In: 5, Hidden: []int{7}, Classes: 3},
		{Seed: 4, In: 3, Classes: 2}, // no hidden layer
	}
	for _, opts := range tests {
		t.Run(fmt.Sprintf("%d-%v-%d", opts.In, opts.Hidden, opts.Classes), func(t *testing.T) {
			model, err := MLP(opts)
			if err != nil {
				t.Fatal(err)
			}
			m := loadModel(t, model)
			if got := m.info(t, "features"); !got.Dimensions.Equals(ort.NewShape(-1, int64(opts.In))) || got.DataType != ort.TensorElementDataTypeFloat {
				t.Errorf("features: %v", &got)
			}
			if got := m.info(t, "label"); !got.Dimensions.Equals(ort.NewShape(-1)) || got.DataType != ort.TensorElementDataTypeInt64 {
				t.Errorf("label: %v", &got)
			}

			const batch = 5
			r := rand.New(rand.NewPCG(1, 2))
			features := make([]float32, batch*opts.In)
			for i := range features {
				features[i] = float32(r.NormFloat64())
			}
			outs := m.mustRun(t, map[string]ort.Value{"features": newTensor(t, []int64{batch, int64(opts.In)}, features)})
			probs := outputData[float32](t, outs, "probabilities", batch, int64(opts.Classes))
			labels := outputData[int64](t, outs, "label", batch)

			layers, err := mlpLayers(opts)
			if err != nil {
				t.Fatal(err)
			}
			for row := range batch {
				logits := mlpForward(layers, features[row*opts.In:(row+1)*opts.In])
				want := softmax(logits)
				got := probs[row*opts.Classes : (row+1)*opts.Classes]
				sum := 0.0
				for j := range got {
					sum += float64(got[j])
					if math.Abs(float64(got[j])-want[j]) > 1e-5 {
						t.Errorf("row %d: probabilities %v, Go computes %v", row, got, want)
						break
					}
				}
				if math.Abs(sum-1) > 1e-5 {
					t.Errorf("row %d: probabilities %v sum to %g", row, got, sum)
				}
				best := argmax(logits)
				if labels[row] != int64(best) {
					t.Errorf("row %d: label %d, Go's argmax of logits %v is %d", row, labels[row], logits, best)
				}
				// The label must name the first largest reported probability.
				if first := argmax(got); labels[row] != int64(first) {
					t.Errorf("row %d: label %d, but the first largest probability of %v is at %d", row, labels[row], got, first)
				}
			}
		})
	}
}

// mlpForward computes the logits of one row in float64.
func mlpForward(layers []denseLayer, features []float32) []float64 {
	x := make([]float64, len(features))
	for i, f := range features {
		x[i] = float64(f)
	}
	for li, l := range layers {
		y := make([]float64, l.out)
		for j := range y {
			y[j] = float64(l.bias[j])
			for i := range l.in {
				y[j] += x[i] * float64(l.weight[i*l.out+j])
			}
			if li < len(layers)-1 {
				y[j] = max(y[j], 0)
			}
		}
		x = y
	}
	return x
}

func softmax(logits []float64) []float64 {
	top := slices.Max(logits)
	out := make([]float64, len(logits))
	sum := 0.0
	for i, l := range logits {
		out[i] = math.Exp(l - top)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

func argmax[T float32 | float64](v []T) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// TestMLPBenchmarkSize builds the batching benchmark's model and checks that
// it holds the advertised 64 MB of weights and that the runtime serves it.
func TestMLPBenchmarkSize(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a 64 MB model")
	}
	// The shape of the server's large built-in model.
	opts := MLPOptions{Seed: 20261124, In: 2048, Hidden: []int{2048, 2048, 2048}, Classes: 2048}
	model, err := MLP(opts)
	if err != nil {
		t.Fatal(err)
	}
	const weights = 4 * 2048 * 2048 * 4 // four 2048x2048 float32 matrices
	if len(model) < weights || len(model) > weights+1<<20 {
		t.Errorf("model has %d bytes, want a little over %d", len(model), weights)
	}
	m := loadModel(t, model)
	features := make([]float32, 2*2048)
	for i := range features {
		features[i] = float32(i%7) - 3
	}
	outs := m.mustRun(t, map[string]ort.Value{"features": newTensor(t, []int64{2, 2048}, features)})
	probs := outputData[float32](t, outs, "probabilities", 2, 2048)
	labels := outputData[int64](t, outs, "label", 2)
	for row := range 2 {
		got := probs[row*2048 : (row+1)*2048]
		sum := 0.0
		for _, p := range got {
			sum += float64(p)
		}
		if math.Abs(sum-1) > 1e-4 {
			t.Errorf("row %d: probabilities sum to %g", row, sum)
		}
		if first := argmax(got); labels[row] != int64(first) {
			t.Errorf("row %d: label %d, but the first largest probability is at %d", row, labels[row], first)
		}
	}
}

func TestMLPRejectsBadOptions(t *testing.T) {
	for _, opts := range []MLPOptions{
		{In: 0, Classes: 2},
		{In: 3, Classes: 0},
		{In: 3, Hidden: []int{4, 0}, Classes: 2},
		{In: 3, Hidden: []int{-1}, Classes: 2},
	} {
		if _, err := MLP(opts); err == nil {
			t.Errorf("MLP(%+v) succeeded", opts)
		}
	}
}

// identityDTypeNames is what IdentityAllDTypes must cover, spelled out rather
// than derived from identityDTypes so that dropping a dtype fails the test.
var identityDTypeNames = []string{
	"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
	"float16", "bfloat16", "float32", "float64",
}

func TestIdentityAllDTypesEchoesEveryDType(t *testing.T) {
	model, err := IdentityAllDTypes()
	if err != nil {
		t.Fatal(err)
	}
	m := loadModel(t, model)
	var names []string
	for _, in := range m.inputs {
		names = append(names, in.Name)
	}
	want := []string{"x_scalar"}
	for _, n := range identityDTypeNames {
		want = append(want, "x_"+n)
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("inputs %v, want %v", names, want)
	}

	inputs := map[string]ort.Value{}
	outputs := map[string]ort.Value{}
	sent := map[string][]byte{}
	for i, name := range identityDTypeNames {
		d, _, err := tensor.ParseDType(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, io := range []string{"x_" + name, "y_" + name} {
			info := m.info(t, io)
			if info.DataType != ortElementType(d) || !info.Dimensions.Equals(ort.NewShape(-1, -1)) {
				t.Errorf("%s: the runtime sees %v, want %v with two dynamic dimensions", io, &info, ortElementType(d))
			}
		}
		// Each dtype gets its own shape, since each has its own symbolic
		// dimensions.
		shape := []int64{int64(1 + i%3), int64(2 + i%4)}
		data := make([]byte, int(shape[0]*shape[1])*d.Size())
		for k := range data {
			data[k] = byte(k*37 + i*11 + 1)
			if d == tensor.Bool {
				data[k] &= 1
			}
		}
		sent[name] = data
		x, err := ort.NewCustomDataTensor(ort.NewShape(shape...), data, ortElementType(d))
		if err != nil {
			t.Fatalf("%s input: %v", name, err)
		}
		inputs["x_"+name] = x
		// The binding mis-copies float16 and bfloat16 outputs it allocates
		// itself, so every output is preallocated.
		y, err := ort.NewCustomDataTensor(ort.NewShape(shape...), make([]byte, len(data)), ortElementType(d))
		if err != nil {
			t.Fatalf("%s output: %v", name, err)
		}
		outputs["y_"+name] = y
	}
	scalarIn, err := ort.NewScalar(-1.5e300)
	if err != nil {
		t.Fatal(err)
	}
	inputs["x_scalar"] = scalarIn
	scalarOut, err := ort.NewEmptyScalar[float64]()
	if err != nil {
		t.Fatal(err)
	}
	outputs["y_scalar"] = scalarOut

	if _, err := m.run(t, inputs, outputs); err != nil {
		t.Fatal(err)
	}
	for _, name := range identityDTypeNames {
		if got := outputs["y_"+name].(*ort.CustomDataTensor).GetData(); !bytes.Equal(got, sent[name]) {
			t.Errorf("y_%s = % x, want % x", name, got, sent[name])
		}
	}
	if got := scalarOut.GetData(); got != -1.5e300 {
		t.Errorf("y_scalar = %g, want -1.5e300", got)
	}
	if info := m.info(t, "y_scalar"); len(info.Dimensions) != 0 || info.DataType != ort.TensorElementDataTypeDouble {
		t.Errorf("y_scalar: the runtime sees %v, want a 0-d float64", &info)
	}
}

// TestIdentityLacksComplexKernels checks the reason IdentityAllDTypes leaves
// out complex64 and complex128. If it fails, the runtime has gained them and
// identityDTypes should include them.
func TestIdentityLacksComplexKernels(t *testing.T) {
	requireORT(t)
	for _, d := range []tensor.DType{tensor.Complex64, tensor.Complex128} {
		b := NewBuilder("identity_"+d.String(), opset)
		b.Input("x", d, Sym("n"))
		b.Node("Identity", []string{"x"}, []string{"y"})
		b.Output("y", d, Sym("n"))
		model, err := b.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, []string{"x"}, []string{"y"}, nil)
		if err == nil {
			s.Destroy()
			t.Errorf("ONNX Runtime %s loads Identity on %v; add it to identityDTypes", ort.GetVersion(), d)
			continue
		}
		t.Logf("%v: %v", d, err)
	}
}

func ortElementType(d tensor.DType) ort.TensorElementDataType {
	et, _ := onnxDType(d)
	// ONNX Runtime's element type enum is ONNX's TensorProto.DataType.
	return ort.TensorElementDataType(et)
}

// mixedBatch holds inputs of MixedFixture for some rows.
type mixedBatch struct {
	a    []float32
	b    []int64
	flag []bool
}

func (in mixedBatch) rows() int { return len(in.flag) }

func (in mixedBatch) row(i int) mixedBatch {
	return mixedBatch{a: in.a[4*i : 4*i+4], b: in.b[4*i : 4*i+4], flag: in.flag[i : i+1]}
}

func (in mixedBatch) run(t *testing.T, m *loadedModel) map[string]ort.Value {
	t.Helper()
	n := int64(in.rows())
	return m.mustRun(t, map[string]ort.Value{
		"a":    newTensor(t, []int64{n, 4}, slices.Clone(in.a)),
		"b":    newTensor(t, []int64{n, 4}, slices.Clone(in.b)),
		"flag": newTensor(t, []int64{n, 1}, slices.Clone(in.flag)),
	})
}

func TestMixedFixture(t *testing.T) {
	model, err := MixedFixture()
	if err != nil {
		t.Fatal(err)
	}
	m := loadModel(t, model)
	for name, want := range map[string]ort.TensorElementDataType{
		"a": ort.TensorElementDataTypeFloat, "b": ort.TensorElementDataTypeInt64, "flag": ort.TensorElementDataTypeBool,
		"sum": ort.TensorElementDataTypeFloat, "row_total": ort.TensorElementDataTypeInt64,
		"positive": ort.TensorElementDataTypeBool, "scaled": ort.TensorElementDataTypeDouble,
	} {
		if info := m.info(t, name); info.DataType != want || info.Dimensions[0] != -1 {
			t.Errorf("%s: the runtime sees %v, want %v with a dynamic first dimension", name, &info, want)
		}
	}

	in := mixedBatch{
		a:    []float32{1.5, -2, 0, 3.25, 0.1, 1e30, -1e-30, 7, -0.5, 2, 4, float32(math.Copysign(0, -1))},
		b:    []int64{1, 2, 3, 4, -10, 20, -30, 1 << 40, 0, 0, 0, -1},
		flag: []bool{true, true, false},
	}
	outs := in.run(t, m)
	n := int64(in.rows())
	sum := outputData[float32](t, outs, "sum", n, 4)
	rowTotal := outputData[int64](t, outs, "row_total", n)
	positive := outputData[bool](t, outs, "positive", n, 4)
	scaled := outputData[float64](t, outs, "scaled", n, 4)
	for i := range in.a {
		row := i / 4
		if want := in.a[i] + float32(in.b[i]); math.Float32bits(sum[i]) != math.Float32bits(want) {
			t.Errorf("sum[%d] = %g, want %g", i, sum[i], want)
		}
		if want := in.a[i] > 0 && in.flag[row]; positive[i] != want {
			t.Errorf("positive[%d] = %v, want %v", i, positive[i], want)
		}
		if want := float64(in.a[i]) * 2.5; math.Float64bits(scaled[i]) != math.Float64bits(want) {
			t.Errorf("scaled[%d] = %g, want %g", i, scaled[i], want)
		}
	}
	for row := range in.rows() {
		var want int64
		for _, v := range in.b[4*row : 4*row+4] {
			want += v
		}
		if rowTotal[row] != want {
			t.Errorf("row_total[%d] = %d, want %d", row, rowTotal[row], want)
		}
	}

	// Row by row, the runtime must give the same bits as in one batch.
	for row := range in.rows() {
		one := in.row(row).run(t, m)
		if got := outputData[float32](t, one, "sum", 1, 4); !sameBits32(got, sum[4*row:4*row+4]) {
			t.Errorf("row %d alone: sum %v, batched %v", row, got, sum[4*row:4*row+4])
		}
		if got := outputData[int64](t, one, "row_total", 1); got[0] != rowTotal[row] {
			t.Errorf("row %d alone: row_total %d, batched %d", row, got[0], rowTotal[row])
		}
		if got := outputData[bool](t, one, "positive", 1, 4); !slices.Equal(got, positive[4*row:4*row+4]) {
			t.Errorf("row %d alone: positive %v, batched %v", row, got, positive[4*row:4*row+4])
		}
		if got := outputData[float64](t, one, "scaled", 1, 4); !slices.Equal(got, scaled[4*row:4*row+4]) {
			t.Errorf("row %d alone: scaled %v, batched %v", row, got, scaled[4*row:4*row+4])
		}
	}
}

func TestFixedBatchFixture(t *testing.T) {
	model, err := FixedBatchFixture()
	if err != nil {
		t.Fatal(err)
	}
	m := loadModel(t, model)
	for _, name := range []string{"x", "y"} {
		if info := m.info(t, name); !info.Dimensions.Equals(ort.NewShape(2, 3)) || info.DataType != ort.TensorElementDataTypeFloat {
			t.Errorf("%s: the runtime sees %v, want float32 (2, 3)", name, &info)
		}
	}
	x := []float32{0, 1, -1, 0.5, 1e7, -3.75}
	outs := m.mustRun(t, map[string]ort.Value{"x": newTensor(t, []int64{2, 3}, slices.Clone(x))})
	y := outputData[float32](t, outs, "y", 2, 3)
	want := make([]float32, len(x))
	for i, v := range x {
		want[i] = 2*v + 1
	}
	if !sameBits32(y, want) {
		t.Errorf("y = %v, want %v", y, want)
	}
	// The runtime enforces the fixed dimensions.
	if _, err := m.run(t, map[string]ort.Value{"x": newTensor(t, []int64{1, 3}, x[:3])}, nil); err == nil {
		t.Error("the runtime accepted x of shape (1, 3)")
	}
}

func TestReshapeFixtureFailsAtRunTime(t *testing.T) {
	model, err := ReshapeFixture()
	if err != nil {
		t.Fatal(err)
	}
	m := loadModel(t, model)
	if info := m.info(t, "y"); !info.Dimensions.Equals(ort.NewShape(-1, -1)) {
		t.Errorf("y: the runtime sees %v, want two dynamic dimensions", &info)
	}
	x := []float32{1, 2, 3, 4, 5, 6}
	reshape := func(shape ...int64) (map[string]ort.Value, error) {
		return m.run(t, map[string]ort.Value{
			"x":     newTensor(t, []int64{6}, slices.Clone(x)),
			"shape": newTensor(t, []int64{2}, shape),
		}, nil)
	}
	for _, tc := range []struct{ shape, want []int64 }{
		{[]int64{2, 3}, []int64{2, 3}},
		{[]int64{3, -1}, []int64{3, 2}},
	} {
		outs, err := reshape(tc.shape...)
		if err != nil {
			t.Fatalf("reshape to %v: %v", tc.shape, err)
		}
		if y := outputData[float32](t, outs, "y", tc.want...); !slices.Equal(y, x) {
			t.Errorf("reshape to %v: y = %v, want %v", tc.shape, y, x)
		}
	}
	if _, err := reshape(4, 4); err == nil {
		t.Error("reshaping 6 elements to (4, 4) succeeded")
	} else {
		t.Logf("the runtime fails as it should: %v", err)
	}
	// The session stays usable after the failure.
	if _, err := reshape(6, 1); err != nil {
		t.Errorf("after the failure: %v", err)
	}
}

func TestElementwiseFixture(t *testing.T) {
	const seed = 11
	model, err := ElementwiseFixture(seed)
	if err != nil {
		t.Fatal(err)
	}
	m := loadModel(t, model)
	const rows = 5
	r := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, rows*8)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 3)
	}
	x[3], x[9] = 0, float32(math.Inf(-1))
	outs := m.mustRun(t, map[string]ort.Value{"x": newTensor(t, []int64{rows, 8}, slices.Clone(x))})
	y := outputData[float32](t, outs, "y", rows, 8)
	z := outputData[float32](t, outs, "z", rows, 8)

	w, c := elementwiseParams(seed)
	for i, v := range x {
		// The conversion keeps Go from fusing the multiply and add, which
		// would round once instead of twice.
		if want := float32(v*w[i%8]) + c[i%8]; math.Float32bits(y[i]) != math.Float32bits(want) {
			t.Errorf("y[%d] = %g, want %g", i, y[i], want)
		}
		if want := math.Tanh(float64(v)); math.Abs(float64(z[i])-want) > 1e-6 {
			t.Errorf("z[%d] = %g, want %g", i, z[i], want)
		}
	}
	for row := range rows {
		one := m.mustRun(t, map[string]ort.Value{"x": newTensor(t, []int64{1, 8}, slices.Clone(x[8*row:8*row+8]))})
		if got := outputData[float32](t, one, "y", 1, 8); !sameBits32(got, y[8*row:8*row+8]) {
			t.Errorf("row %d alone: y %v, batched %v", row, got, y[8*row:8*row+8])
		}
		if got := outputData[float32](t, one, "z", 1, 8); !sameBits32(got, z[8*row:8*row+8]) {
			t.Errorf("row %d alone: z %v, batched %v", row, got, z[8*row:8*row+8])
		}
	}
}

func TestGeneratorsAreDeterministic(t *testing.T) {
	generators := map[string]func() ([]byte, error){
		"MLP":               func() ([]byte, error) { return MLP(MLPOptions{Seed: 9, In: 4, Hidden: []int{8}, Classes: 3}) },
		"IdentityAllDTypes": IdentityAllDTypes,
		"MixedFixture":      MixedFixture,
		"FixedBatchFixture": FixedBatchFixture,
		"ReshapeFixture":    ReshapeFixture,
		"Elementwise":       func() ([]byte, error) { return ElementwiseFixture(9) },
	}
	for name, gen := range generators {
		first, err := gen()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		second, err := gen()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(first, second) {
			t.Errorf("%s gives different bytes on a second call", name)
		}
	}
}

// TestSeedChangesOnlyWeights checks that another seed draws other weights for
// every initializer and leaves the rest of the model alone.
func TestSeedChangesOnlyWeights(t *testing.T) {
	generators := map[string]func(seed uint64) ([]byte, error){
		"MLP": func(seed uint64) ([]byte, error) {
			return MLP(MLPOptions{Seed: seed, In: 4, Hidden: []int{8, 8}, Classes: 3})
		},
		"Elementwise": ElementwiseFixture,
	}
	for name, gen := range generators {
		a, b := parseModel(t, gen, 1), parseModel(t, gen, 2)
		inits := a.GetGraph().GetInitializer()
		if len(inits) == 0 {
			t.Fatalf("%s has no initializers", name)
		}
		for i, init := range inits {
			other := b.GetGraph().GetInitializer()[i]
			if bytes.Equal(init.GetRawData(), other.GetRawData()) {
				t.Errorf("%s: initializer %q is the same for seeds 1 and 2", name, init.GetName())
			}
			init.RawData, other.RawData = nil, nil
		}
		if !proto.Equal(a, b) {
			t.Errorf("%s: seeds 1 and 2 differ in more than the weights", name)
		}
	}
}

func parseModel(t *testing.T, gen func(uint64) ([]byte, error), seed uint64) *onnxpb.ModelProto {
	t.Helper()
	data, err := gen(seed)
	if err != nil {
		t.Fatal(err)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// TestWeightScale checks the Glorot-uniform bound, so that deep models keep
// activations in range.
func TestWeightScale(t *testing.T) {
	layers, err := mlpLayers(MLPOptions{Seed: 5, In: 300, Hidden: []int{100}, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		limit := math.Sqrt(6 / float64(l.in+l.out))
		lo, hi := slices.Min(l.weight), slices.Max(l.weight)
		if float64(hi) >= limit || float64(lo) < -limit || float64(hi) < 0.9*limit || float64(lo) > -0.9*limit {
			t.Errorf("layer %d: weights span [%g, %g], want about ±%g", i, lo, hi, limit)
		}
		if b := slices.Max(l.bias); float64(b) >= 1/math.Sqrt(float64(l.in)) {
			t.Errorf("layer %d: bias %g exceeds 1/sqrt(%d)", i, b, l.in)
		}
	}
}
