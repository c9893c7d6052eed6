package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/modelserver/modelserver/tensor"
)

// listBuilder turns a nested list of numbers, walked by the JSON or msgpack
// scanner, straight into the little-endian buffer of a tensor of one dtype.
// The shape comes from the nesting; ragged lists are rejected. Scanners call
// open and close around each list and leaf before each put.
type listBuilder struct {
	dtype tensor.DType
	size  int    // element size in bytes
	data  []byte // aligned to size; len is the bytes written so far
	// shape[i] is the length of the lists at nesting level i+1, -1 until
	// the first of them closes.
	shape []int64
	depth int // lists currently open
	ndim  int // fixed by the first leaf or empty list; -1 before
}

var errRagged = errors.New("ragged nested list")

func newListBuilder(d tensor.DType) *listBuilder {
	return &listBuilder{dtype: d, size: d.Size(), shape: make([]int64, 0, 4), ndim: -1}
}

func (b *listBuilder) open() error {
	if b.ndim >= 0 && b.depth >= b.ndim {
		return fmt.Errorf("%w: a list at nesting level %d where numbers were at level %d", errRagged, b.depth+1, b.ndim)
	}
	if b.depth == maxDims {
		return fmt.Errorf("nested list has more than %d levels", maxDims)
	}
	b.depth++
	if len(b.shape) < b.depth {
		b.shape = append(b.shape, -1)
	}
	return nil
}

func (b *listBuilder) close(n int) error {
	if n == 0 {
		if err := b.fixDepth(); err != nil {
			return err
		}
	}
	level := b.depth - 1
	switch prev := b.shape[level]; {
	case prev < 0:
		b.shape[level] = int64(n)
	case prev != int64(n):
		return fmt.Errorf("%w: lists at nesting level %d have %d and %d elements", errRagged, b.depth, prev, n)
	}
	b.depth--
	return nil
}

// leaf is called before each number.
func (b *listBuilder) leaf() error { return b.fixDepth() }

// fixDepth records or checks the level at which numbers sit: every number,
// and every empty list, must be at the same level.
func (b *listBuilder) fixDepth() error {
	switch {
	case b.ndim < 0:
		b.ndim = b.depth
	case b.ndim != b.depth:
		return fmt.Errorf("%w: numbers at nesting levels %d and %d", errRagged, b.ndim, b.depth)
	}
	return nil
}

func (b *listBuilder) tensor() (tensor.Tensor, error) {
	if b.data == nil {
		b.data = []byte{}
	}
	return tensor.New(b.dtype, b.shape[:b.ndim], b.data)
}

// slot appends room for one element and returns it.
func (b *listBuilder) slot() []byte {
	n := len(b.data)
	if n+b.size > cap(b.data) {
		grown := alignedBytes(max(2*cap(b.data), 64*b.size), b.size)[:n]
		copy(grown, b.data)
		b.data = grown
	}
	b.data = b.data[:n+b.size]
	return b.data[n:]
}

// putInt stores the integer ±mag (neg means negative); false if it does not
// fit the dtype. Floats take the nearest value, as numpy's casts do.
func (b *listBuilder) putInt(neg bool, mag uint64) bool {
	switch b.dtype {
	case tensor.Bool:
		if neg || mag > 1 {
			return false
		}
	case tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64:
		limit := uint64(1) << (8*b.size - 1)
		if mag > limit || (!neg && mag == limit) {
			return false
		}
	case tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
		if neg || (b.size < 8 && mag >= 1<<(8*b.size)) {
			return false
		}
	default:
		f := float64(mag)
		if neg {
			f = -f
		}
		return b.putFloat(f)
	}
	v := mag
	if neg {
		v = -mag // two's complement
	}
	putLE(b.slot(), v)
	return true
}

// putFloat stores f, rounding to the nearest value of a float dtype; an
// integer dtype takes only integral values in range.
func (b *listBuilder) putFloat(f float64) bool {
	switch b.dtype {
	case tensor.Float16:
		binary.LittleEndian.PutUint16(b.slot(), float64ToFloat16(f))
	case tensor.BFloat16:
		binary.LittleEndian.PutUint16(b.slot(), float64ToBFloat16(f))
	case tensor.Float32, tensor.Complex64: // a complex gets a zero imaginary part
		binary.LittleEndian.PutUint32(b.slot(), math.Float32bits(float32(f)))
	case tensor.Float64, tensor.Complex128:
		binary.LittleEndian.PutUint64(b.slot(), math.Float64bits(f))
	default:
		if f != math.Trunc(f) || math.Abs(f) >= 0x1p64 { // also rejects NaN and ±Inf
			return false
		}
		return b.putInt(f < 0, uint64(math.Abs(f)))
	}
	return true
}

func (b *listBuilder) putBool(v bool) bool {
	if b.dtype != tensor.Bool {
		return false
	}
	s := b.slot()
	s[0] = 0
	if v {
		s[0] = 1
	}
	return true
}

// pyNaN is the NaN that Python's float("nan") and json.loads produce; Go's
// math.NaN() sets another payload bit, which numpy would keep in float64.
var pyNaN = math.Float64frombits(0x7ff8000000000000)

// putNull stores NaN, as numpy does for None in a float array.
func (b *listBuilder) putNull() bool {
	switch b.dtype {
	case tensor.Float16, tensor.BFloat16, tensor.Float32, tensor.Float64, tensor.Complex64, tensor.Complex128:
		return b.putFloat(pyNaN)
	}
	return false
}

// putLE writes the low len(dst) bytes of v, little-endian.
func putLE(dst []byte, v uint64) {
	for i := range dst {
		dst[i] = byte(v >> (8 * i))
	}
}
