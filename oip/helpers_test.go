package oip

import (
	"context"
	"encoding/binary"
	"math"
	"runtime"
	"testing"

	"go.uber.org/goleak"

	"github.com/modelserver/modelserver/tensor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func f32(shape []int64, vals ...float32) tensor.Tensor {
	b := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return tensor.Tensor{DType: tensor.Float32, Shape: shape, Data: b}
}

func f64(shape []int64, vals ...float64) tensor.Tensor {
	b := make([]byte, 0, 8*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return tensor.Tensor{DType: tensor.Float64, Shape: shape, Data: b}
}

func i64(shape []int64, vals ...int64) tensor.Tensor {
	b := make([]byte, 0, 8*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return tensor.Tensor{DType: tensor.Int64, Shape: shape, Data: b}
}

func bools(shape []int64, vals ...bool) tensor.Tensor {
	b := make([]byte, len(vals))
	for i, v := range vals {
		if v {
			b[i] = 1
		}
	}
	return tensor.Tensor{DType: tensor.Bool, Shape: shape, Data: b}
}

// patterned returns a tensor of dtype d whose bytes follow a fixed pattern
// that exercises every byte of every element; bools are 0 or 1.
func patterned(d tensor.DType, shape []int64) tensor.Tensor {
	size, err := tensor.ByteSize(d, shape)
	if err != nil {
		panic(err)
	}
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*37 + 11)
		if d == tensor.Bool {
			b[i] &= 1
		}
	}
	if d == tensor.Float32 || d == tensor.Float64 || d == tensor.Float16 || d == tensor.BFloat16 {
		// Keep floats finite and not NaN so that typed round trips compare
		// bit for bit: clear the top exponent bit of every element.
		w := d.Size()
		for i := w - 1; i < len(b); i += w {
			b[i] &^= 0x40
		}
	}
	return tensor.Tensor{DType: d, Shape: shape, Data: b}
}

// allocatedDuring reports the bytes allocated while f runs.
func allocatedDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// predictFunc adapts a function to Predictor.
type predictFunc func(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error)

func (f predictFunc) Predict(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	return f(ctx, in)
}
