package onnxgen

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/modelserver/modelserver/internal/onnxpb"
	"github.com/modelserver/modelserver/tensor"
)

// opset is the default-domain opset of the generated models. From opset 13
// ReduceSum takes its axes as an input rather than an attribute.
const opset = 17

// MLPOptions configures MLP.
type MLPOptions struct {
	// Seed selects the weights.
	Seed uint64
	// In is the number of input features.
	In int
	// Hidden lists the width of each hidden layer; empty means a single
	// linear layer (multinomial logistic regression).
	Hidden []int
	// Classes is the number of output classes.
	Classes int
}

// MLP returns a classifier: input "features" float32 [batch, In] goes through
// one Gemm + Relu per hidden layer and a final Gemm to the logits. Outputs are
// "probabilities" float32 [batch, Classes] (Softmax over the last axis) and
// "label" int64 [batch], the index of the first largest probability. Weights
// are Glorot-uniform, biases uniform in ±1/sqrt(fan_in).
func MLP(opts MLPOptions) ([]byte, error) {
	layers, err := mlpLayers(opts)
	if err != nil {
		return nil, err
	}
	b := NewBuilder("mlp", opset)
	batch := Sym("batch")
	b.Input("features", tensor.Float32, batch, Fixed(int64(opts.In)))
	x := "features"
	for i, l := range layers {
		w, bias := fmt.Sprintf("layer%d.weight", i), fmt.Sprintf("layer%d.bias", i)
		b.Initializer(w, float32Tensor([]int64{int64(l.in), int64(l.out)}, l.weight))
		b.Initializer(bias, float32Tensor([]int64{int64(l.out)}, l.bias))
		if i == len(layers)-1 {
			b.Node("Gemm", []string{x, w, bias}, []string{"logits"})
			break
		}
		gemm, relu := fmt.Sprintf("layer%d.gemm", i), fmt.Sprintf("layer%d.relu", i)
		b.Node("Gemm", []string{x, w, bias}, []string{gemm})
		b.Node("Relu", []string{gemm}, []string{relu})
		x = relu
	}
	// The label is taken from the probabilities, not the logits, so that it
	// always names a largest reported probability even where two logits
	// round to the same probability.
	b.Node("Softmax", []string{"logits"}, []string{"probabilities"}, Int("axis", -1))
	b.Node("ArgMax", []string{"probabilities"}, []string{"label"}, Int("axis", 1), Int("keepdims", 0))
	b.Output("probabilities", tensor.Float32, batch, Fixed(int64(opts.Classes)))
	b.Output("label", tensor.Int64, batch)
	return b.Bytes()
}

// denseLayer is one Gemm of an MLP: y = x·weight + bias, weight row-major
// [in, out].
type denseLayer struct {
	in, out      int
	weight, bias []float32
}

func mlpLayers(opts MLPOptions) ([]denseLayer, error) {
	sizes := append(append([]int{opts.In}, opts.Hidden...), opts.Classes)
	for _, n := range sizes {
		if n < 1 {
			return nil, fmt.Errorf("onnxgen: MLP sizes must be positive, got In %d, Hidden %v, Classes %d", opts.In, opts.Hidden, opts.Classes)
		}
	}
	r := newRand(opts.Seed)
	layers := make([]denseLayer, len(sizes)-1)
	for i := range layers {
		in, out := sizes[i], sizes[i+1]
		layers[i] = denseLayer{
			in:     in,
			out:    out,
			weight: uniform(r, in*out, math.Sqrt(6/float64(in+out))),
			bias:   uniform(r, out, 1/math.Sqrt(float64(in))),
		}
	}
	return layers, nil
}

// identityDTypes are the dtypes ONNX Runtime's Identity accepts: every dtype
// but the complex ones, which the runtime does not register as tensor types
// at all (a model using them fails to load).
func identityDTypes() []tensor.DType {
	var out []tensor.DType
	for _, d := range tensor.AllDTypes() {
		if d != tensor.Complex64 && d != tensor.Complex128 {
			out = append(out, d)
		}
	}
	return out
}

// IdentityAllDTypes returns a model that echoes one tensor of every dtype
// ONNX Runtime's Identity supports (all but complex64 and complex128): input
// "x_<dtype>" of shape [<dtype>_rows, <dtype>_cols] to output "y_<dtype>" of
// the same shape, with <dtype> the numpy name (tensor.DType.String), and the
// 0-d float64 input "x_scalar" to output "y_scalar".
func IdentityAllDTypes() ([]byte, error) {
	b := NewBuilder("identity_all_dtypes", opset)
	for _, d := range identityDTypes() {
		rows, cols := Sym(d.String()+"_rows"), Sym(d.String()+"_cols")
		x, y := "x_"+d.String(), "y_"+d.String()
		b.Input(x, d, rows, cols)
		b.Node("Identity", []string{x}, []string{y})
		b.Output(y, d, rows, cols)
	}
	b.Input("x_scalar", tensor.Float64)
	b.Node("Identity", []string{"x_scalar"}, []string{"y_scalar"})
	b.Output("y_scalar", tensor.Float64)
	return b.Bytes()
}

// MixedFixture returns a model with inputs and outputs of several dtypes and
// a shared dynamic first dimension "batch". Every output row depends only on
// the same input row, so running rows together or one by one gives the same
// bits:
//
//	inputs:  a float32 [batch, 4], b int64 [batch, 4], flag bool [batch, 1]
//	sum       float32 [batch, 4] = a + float32(b)
//	row_total int64   [batch]    = b[i, 0] + ... + b[i, 3]
//	positive  bool    [batch, 4] = a > 0 && flag (flag broadcast along the row)
//	scaled    float64 [batch, 4] = float64(a) * 2.5
func MixedFixture() ([]byte, error) {
	b := NewBuilder("mixed", opset)
	batch := Sym("batch")
	b.Input("a", tensor.Float32, batch, Fixed(4))
	b.Input("b", tensor.Int64, batch, Fixed(4))
	b.Input("flag", tensor.Bool, batch, Fixed(1))
	b.Initializer("zero", float32Tensor(nil, []float32{0}))
	b.Initializer("two_and_a_half", float64Tensor(nil, []float64{2.5}))
	b.Initializer("row_axis", int64Tensor([]int64{1}, []int64{1}))

	b.Node("Cast", []string{"b"}, []string{"b_float"}, Int("to", int64(onnxpb.TensorProto_FLOAT)))
	b.Node("Add", []string{"a", "b_float"}, []string{"sum"})
	b.Node("ReduceSum", []string{"b", "row_axis"}, []string{"row_total"}, Int("keepdims", 0))
	b.Node("Greater", []string{"a", "zero"}, []string{"a_positive"})
	b.Node("And", []string{"a_positive", "flag"}, []string{"positive"})
	b.Node("Cast", []string{"a"}, []string{"a_double"}, Int("to", int64(onnxpb.TensorProto_DOUBLE)))
	b.Node("Mul", []string{"a_double", "two_and_a_half"}, []string{"scaled"})

	b.Output("sum", tensor.Float32, batch, Fixed(4))
	b.Output("row_total", tensor.Int64, batch)
	b.Output("positive", tensor.Bool, batch, Fixed(4))
	b.Output("scaled", tensor.Float64, batch, Fixed(4))
	return b.Bytes()
}

// FixedBatchFixture returns a model whose dimensions are all fixed, so a
// server cannot batch requests for it: input "x" float32 [2, 3] to output
// "y" float32 [2, 3] = 2x + 1.
func FixedBatchFixture() ([]byte, error) {
	b := NewBuilder("fixed_batch", opset)
	b.Input("x", tensor.Float32, Fixed(2), Fixed(3))
	b.Initializer("two", float32Tensor(nil, []float32{2}))
	b.Initializer("one", float32Tensor(nil, []float32{1}))
	b.Node("Mul", []string{"x", "two"}, []string{"doubled"})
	b.Node("Add", []string{"doubled", "one"}, []string{"y"})
	b.Output("y", tensor.Float32, Fixed(2), Fixed(3))
	return b.Bytes()
}

// ReshapeFixture returns a model that reshapes input "x" float32 [n] to the
// shape given by input "shape" int64 [2], giving output "y" float32
// [rows, cols]. Whether the shape fits is known only when the model runs,
// so a request such as x of 6 elements with shape [4, 4] makes ONNX Runtime
// fail at run time rather than at load time. Reshape's special values apply:
// 0 copies the input dimension and -1 infers one dimension.
func ReshapeFixture() ([]byte, error) {
	b := NewBuilder("reshape", opset)
	b.Input("x", tensor.Float32, Sym("n"))
	b.Input("shape", tensor.Int64, Fixed(2))
	b.Node("Reshape", []string{"x", "shape"}, []string{"y"})
	b.Output("y", tensor.Float32, Sym("rows"), Sym("cols"))
	return b.Bytes()
}

// ElementwiseFixture returns a model with input "x" float32 [batch, 8] and
// outputs "y" float32 [batch, 8] = x*w + c (multiply, round, add, round; w and
// c are [8] initializers drawn from seed, uniform in [-1, 1)) and "z" float32
// [batch, 8] = tanh(x). Every element depends only on the same input element,
// so batching never changes a bit.
func ElementwiseFixture(seed uint64) ([]byte, error) {
	w, c := elementwiseParams(seed)
	b := NewBuilder("elementwise", opset)
	batch := Sym("batch")
	b.Input("x", tensor.Float32, batch, Fixed(8))
	b.Initializer("w", float32Tensor([]int64{8}, w))
	b.Initializer("c", float32Tensor([]int64{8}, c))
	b.Node("Mul", []string{"x", "w"}, []string{"xw"})
	b.Node("Add", []string{"xw", "c"}, []string{"y"})
	b.Node("Tanh", []string{"x"}, []string{"z"})
	b.Output("y", tensor.Float32, batch, Fixed(8))
	b.Output("z", tensor.Float32, batch, Fixed(8))
	return b.Bytes()
}

func elementwiseParams(seed uint64) (w, c []float32) {
	r := newRand(seed)
	return uniform(r, 8, 1), uniform(r, 8, 1)
}

// newRand returns the generator all weights are drawn from. The seed fills
// both PCG state words; changing this derivation changes every generated
// model, including the server's built-in one.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }

// uniform draws n values uniformly from [-limit, limit).
func uniform(r *rand.Rand, n int, limit float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((2*r.Float64() - 1) * limit)
	}
	return v
}

func float32Tensor(shape []int64, v []float32) tensor.Tensor {
	data := make([]byte, 0, 4*len(v))
	for _, x := range v {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(x))
	}
	return tensor.Tensor{DType: tensor.Float32, Shape: shape, Data: data}
}

func float64Tensor(shape []int64, v []float64) tensor.Tensor {
	data := make([]byte, 0, 8*len(v))
	for _, x := range v {
		data = binary.LittleEndian.AppendUint64(data, math.Float64bits(x))
	}
	return tensor.Tensor{DType: tensor.Float64, Shape: shape, Data: data}
}

func int64Tensor(shape []int64, v []int64) tensor.Tensor {
	data := make([]byte, 0, 8*len(v))
	for _, x := range v {
		data = binary.LittleEndian.AppendUint64(data, uint64(x))
	}
	return tensor.Tensor{DType: tensor.Int64, Shape: shape, Data: data}
}

// maxFloat16 is the largest finite float16 value.
const maxFloat16 = 65504

// floatTensor returns v as a tensor of dt, Float32 or Float16 (rounded to
// nearest, ties to even).
func floatTensor(dt tensor.DType, shape []int64, v []float32) tensor.Tensor {
	if dt != tensor.Float16 {
		return float32Tensor(shape, v)
	}
	data := make([]byte, 0, 2*len(v))
	for _, x := range v {
		data = binary.LittleEndian.AppendUint16(data, float32ToFloat16(x))
	}
	return tensor.Tensor{DType: tensor.Float16, Shape: shape, Data: data}
}

// roundToFloat16 rounds each value of v to the nearest float16 value.
func roundToFloat16(v []float32) {
	for i, x := range v {
		v[i] = float16ToFloat32(float32ToFloat16(x))
	}
}

// float32ToFloat16 converts v to IEEE 754 half precision, rounding to
// nearest with ties to even; values beyond the float16 range become
// infinities and NaNs stay NaNs.
func float32ToFloat16(v float32) uint16 {
	bits := math.Float32bits(v)
	sign := uint16(bits>>16) & 0x8000
	exp := int(bits>>23) & 0xff
	mant := bits & 0x7fffff
	switch {
	case exp == 0xff && mant != 0:
		return sign | 0x7e00
	case exp == 0xff:
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// A subnormal float16 (or zero): the implicit leading 1 joins the
		// mantissa, shifted right by 1-e more places.
		if e < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint(14 - e)
		half := mant >> shift
		rest := mant & (1<<shift - 1)
		if mid := uint32(1) << (shift - 1); rest > mid || rest == mid && half&1 == 1 {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(e)<<10 | mant>>13
	// Rounding up may carry into the exponent, which is still correct
	// (up to infinity).
	if rest := mant & 0x1fff; rest > 0x1000 || rest == 0x1000 && half&1 == 1 {
		half++
	}
	return sign | uint16(half)
}

// float16ToFloat32 converts an IEEE 754 half-precision value exactly.
func float16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0:
		// Subnormal: mant·2⁻²⁴.
		v := float32(mant) / (1 << 24)
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}
