package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/modelserver/modelserver/tensor"
)

var checkSignature = Signature{
	Inputs: []TensorSpec{
		{Name: "x", DType: tensor.Float32, Shape: []int64{DynamicDim, 2}, DimNames: []string{"batch", ""}},
		{Name: "m", DType: tensor.Bool, Shape: []int64{DynamicDim}, DimNames: []string{"batch"}},
	},
}

func TestSignatureCheck(t *testing.T) {
	x := tensor.Tensor{DType: tensor.Float32, Shape: []int64{1, 2}, Data: make([]byte, 8)}
	m := tensor.Tensor{DType: tensor.Bool, Shape: []int64{1}, Data: []byte{1}}
	tests := []struct {
		name   string
		inputs map[string]tensor.Tensor
		want   string // "" means valid
	}{
		{"valid", map[string]tensor.Tensor{"x": x, "m": m}, ""},
		{"dynamic batch of 3", map[string]tensor.Tensor{"x": {DType: tensor.Float32, Shape: []int64{3, 2}, Data: make([]byte, 24)}, "m": m}, ""},
		{"missing", map[string]tensor.Tensor{"x": x}, `missing input "m" (expected bool (?,))`},
		{"unknown", map[string]tensor.Tensor{"x": x, "m": m, "zz": x, "aa": x}, `unknown input "aa", "zz" (model inputs: "x", "m")`},
		{"dtype", map[string]tensor.Tensor{"x": {DType: tensor.Float64, Shape: []int64{1, 2}, Data: make([]byte, 16)}, "m": m}, `input "x": expected dtype float32, received float64`},
		{"rank", map[string]tensor.Tensor{"x": {DType: tensor.Float32, Shape: []int64{2}, Data: make([]byte, 8)}, "m": m}, `input "x": expected rank 2 shape (?, 2), received rank 1 shape (2,)`},
		{"fixed dim", map[string]tensor.Tensor{"x": {DType: tensor.Float32, Shape: []int64{1, 3}, Data: make([]byte, 12)}, "m": m}, `input "x": expected shape (?, 2), received (1, 3) (dimension 1)`},
		{"data length", map[string]tensor.Tensor{"x": {DType: tensor.Float32, Shape: []int64{1, 2}, Data: make([]byte, 7)}, "m": m}, `input "x": data has 7 bytes`},
		{"bool byte", map[string]tensor.Tensor{"x": x, "m": {DType: tensor.Bool, Shape: []int64{1}, Data: []byte{2}}}, `input "m": bool element 0 is 2`},
	}
	for _, tt := range tests {
		err := checkSignature.Check(tt.inputs)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Check = %v, want nil", tt.name, err)
		case tt.want != "" && (!errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: Check = %v, want ErrInvalidInput containing %q", tt.name, err, tt.want)
		}
	}
}
