package onnxgen

import (
	"fmt"
	"math"

	"github.com/modelserver/modelserver/tensor"
)

// RecurrentOptions size a recurrent cell. Seed picks the weights.
type RecurrentOptions struct {
	Seed               uint64
	In, Hidden, Output int
}

// RecurrentCell builds one step of an Elman recurrent network, for models
// that run a graph step by step and stream each step:
//
//	h_next = tanh(x·Wx + h·Wh + b)   x float32 [batch, In], h float32 [batch, Hidden]
//	y      = h_next·Wy + c           y float32 [batch, Output]
//
// Outputs "h_next" and "y". Weights are drawn like MLP's (Glorot-uniform).
func RecurrentCell(opts RecurrentOptions) ([]byte, error) {
	if opts.In < 1 || opts.Hidden < 1 || opts.Output < 1 {
		return nil, fmt.Errorf("onnxgen: recurrent sizes must be positive, got In %d, Hidden %d, Output %d", opts.In, opts.Hidden, opts.Output)
	}
	r := newRand(opts.Seed)
	in, hid, out := int64(opts.In), int64(opts.Hidden), int64(opts.Output)
	b := NewBuilder("recurrent_cell", opset)
	batch := Sym("batch")
	b.Input("x", tensor.Float32, batch, Fixed(in))
	b.Input("h", tensor.Float32, batch, Fixed(hid))
	b.Initializer("wx", float32Tensor([]int64{in, hid}, uniform(r, opts.In*opts.Hidden, math.Sqrt(6/float64(opts.In+opts.Hidden)))))
	b.Initializer("wh", float32Tensor([]int64{hid, hid}, uniform(r, opts.Hidden*opts.Hidden, math.Sqrt(3/float64(opts.Hidden)))))
	b.Initializer("bh", float32Tensor([]int64{hid}, uniform(r, opts.Hidden, 1/math.Sqrt(float64(opts.In)))))
	b.Initializer("wy", float32Tensor([]int64{hid, out}, uniform(r, opts.Hidden*opts.Output, math.Sqrt(6/float64(opts.Hidden+opts.Output)))))
	b.Initializer("by", float32Tensor([]int64{out}, uniform(r, opts.Output, 1/math.Sqrt(float64(opts.Hidden)))))
	b.Node("MatMul", []string{"x", "wx"}, []string{"xw"})
	b.Node("MatMul", []string{"h", "wh"}, []string{"hw"})
	b.Node("Add", []string{"xw", "hw"}, []string{"pre"})
	b.Node("Add", []string{"pre", "bh"}, []string{"pre_b"})
	b.Node("Tanh", []string{"pre_b"}, []string{"h_next"})
	b.Node("Gemm", []string{"h_next", "wy", "by"}, []string{"y"})
	b.Output("h_next", tensor.Float32, batch, Fixed(hid))
	b.Output("y", tensor.Float32, batch, Fixed(out))
	return b.Bytes()
}
