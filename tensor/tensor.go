// Package tensor defines the dense tensor value that every other package
// exchanges: a dtype, a shape and the raw element bytes.
//
// Contract:
//   - Data holds the elements in C (row-major) order, little-endian, with no
//     padding: len(Data) == NumElements(Shape) * DType.Size().
//   - A Tensor does not own its Data exclusively: decoders may return views
//     into a request body and engines may return views into their own
//     buffers. Callers that keep a Tensor beyond the call that produced it, or
//     that mutate Data, must copy it first.
//   - Shape dimensions are element counts (never bytes); a nil or empty shape
//     is a 0-d scalar with one element.
//
// Values are plain data and safe for concurrent reads.
package tensor

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// DType is the element type of a tensor.
type DType uint8

// The supported element types. The zero value is Invalid.
const (
	Invalid DType = iota
	Bool
	Int8
	Int16
	Int32
	Int64
	Uint8
	Uint16
	Uint32
	Uint64
	Float16
	BFloat16
	Float32
	Float64
	Complex64
	Complex128
)

type dtypeInfo struct {
	name    string // numpy name, also used in NumpyArrayField JSON
	typestr string // numpy dtype.str for the little-endian form
	size    int
}

var dtypeInfos = [...]dtypeInfo{
	Invalid:    {"invalid", "", 0},
	Bool:       {"bool", "|b1", 1},
	Int8:       {"int8", "|i1", 1},
	Int16:      {"int16", "<i2", 2},
	Int32:      {"int32", "<i4", 4},
	Int64:      {"int64", "<i8", 8},
	Uint8:      {"uint8", "|u1", 1},
	Uint16:     {"uint16", "<u2", 2},
	Uint32:     {"uint32", "<u4", 4},
	Uint64:     {"uint64", "<u8", 8},
	Float16:    {"float16", "<f2", 2},
	BFloat16:   {"bfloat16", "<V2", 2},
	Float32:    {"float32", "<f4", 4},
	Float64:    {"float64", "<f8", 8},
	Complex64:  {"complex64", "<c8", 8},
	Complex128: {"complex128", "<c16", 16},
}

// AllDTypes lists every valid dtype in declaration order.
func AllDTypes() []DType {
	out := make([]DType, 0, len(dtypeInfos)-1)
	for d := Bool; d <= Complex128; d++ {
		out = append(out, d)
	}
	return out
}

// Valid reports whether d is one of the supported dtypes.
func (d DType) Valid() bool { return d > Invalid && int(d) < len(dtypeInfos) }

// Size is the size of one element in bytes (0 for Invalid).
func (d DType) Size() int {
	if !d.Valid() {
		return 0
	}
	return dtypeInfos[d].size
}

// String returns the numpy name of the dtype ("float32", "bool", ...).
func (d DType) String() string {
	if !d.Valid() {
		return fmt.Sprintf("dtype(%d)", uint8(d))
	}
	return dtypeInfos[d].name
}

// Typestr returns the numpy array-interface type string of the little-endian
// form ("<f4", "|b1", ...). BFloat16 has no numpy typestr of its own; it is
// reported as "<V2", the form ml_dtypes produces.
func (d DType) Typestr() string {
	if !d.Valid() {
		return ""
	}
	return dtypeInfos[d].typestr
}

// ParseDType accepts a numpy dtype name ("float32", "bool", "bfloat16") or a
// typestr ("<f4", ">i8", "|u1", "=f2"). bigEndian reports a ">" byte order,
// in which case data in that dtype must be byte-swapped with SwapBytes before
// use.
func ParseDType(s string) (d DType, bigEndian bool, err error) {
	for i := Bool; i <= Complex128; i++ {
		if dtypeInfos[i].name == s {
			return i, false, nil
		}
	}
	rest := s
	if len(s) >= 2 {
		switch s[0] {
		case '<', '|', '=':
			rest = s[1:]
		case '>':
			rest, bigEndian = s[1:], true
		}
	}
	for i := Bool; i <= Complex128; i++ {
		// "<V2" names any 2-byte void type, not necessarily bfloat16.
		if i != BFloat16 && dtypeInfos[i].typestr[1:] == rest {
			return i, bigEndian && i.Size() > 1, nil
		}
	}
	return Invalid, false, fmt.Errorf("unsupported dtype %q", s)
}

// Tensor is a dense n-dimensional array. See the package comment for the
// layout of Data.
type Tensor struct {
	DType DType
	Shape []int64
	Data  []byte
}

// ErrShape reports a shape that is negative or whose size overflows.
var ErrShape = errors.New("invalid shape")

// NumElements returns the product of shape, rejecting negative dimensions and
// products that do not fit in an int64.
func NumElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: negative dimension %d in %v", ErrShape, d, shape)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("%w: element count of %v overflows", ErrShape, shape)
		}
		n *= d
	}
	return n, nil
}

// ByteSize returns the number of bytes a tensor of dtype and shape occupies,
// rejecting sizes that overflow an int.
func ByteSize(d DType, shape []int64) (int, error) {
	n, err := NumElements(shape)
	if err != nil {
		return 0, err
	}
	size := int64(d.Size())
	if size == 0 {
		return 0, fmt.Errorf("invalid dtype %v", d)
	}
	if n > int64(math.MaxInt)/size {
		return 0, fmt.Errorf("%w: %v of %v is too large", ErrShape, shape, d)
	}
	return int(n * size), nil
}

// New returns a tensor after checking that data has exactly the size the
// dtype and shape require. data is used, not copied.
func New(d DType, shape []int64, data []byte) (Tensor, error) {
	want, err := ByteSize(d, shape)
	if err != nil {
		return Tensor{}, err
	}
	if len(data) != want {
		return Tensor{}, fmt.Errorf("data has %d bytes, %v of shape %v needs %d", len(data), d, shape, want)
	}
	return Tensor{DType: d, Shape: shape, Data: data}, nil
}

// Validate checks the tensor's invariants.
func (t Tensor) Validate() error {
	_, err := New(t.DType, t.Shape, t.Data)
	return err
}

// NumElements returns the number of elements of t.
func (t Tensor) NumElements() int64 {
	n, _ := NumElements(t.Shape)
	return n
}

// SwapBytes reverses the byte order of every element of data in place, as
// needed to turn big-endian input into the little-endian layout of Tensor.
// Complex elements swap each of their two parts.
func SwapBytes(d DType, data []byte) {
	w := d.Size()
	if d == Complex64 || d == Complex128 {
		w /= 2
	}
	if w <= 1 {
		return
	}
	for i := 0; i+w <= len(data); i += w {
		e := data[i : i+w]
		for a, b := 0, w-1; a < b; a, b = a+1, b-1 {
			e[a], e[b] = e[b], e[a]
		}
	}
}

// ShapeString formats a shape as numpy does: "(2, 3)", "(4,)", "()".
func ShapeString(shape []int64) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, d := range shape {
		if i > 0 {
			b.WriteString(", ")
		}
		if d < 0 {
			b.WriteString("?")
		} else {
			fmt.Fprintf(&b, "%d", d)
		}
	}
	if len(shape) == 1 {
		b.WriteByte(',')
	}
	b.WriteByte(')')
	return b.String()
}
