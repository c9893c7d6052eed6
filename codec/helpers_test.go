package codec

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/modelserver/modelserver/tensor"
)

// le returns the little-endian bytes of fixed-size values.
func le(vals ...any) []byte {
	var out []byte
	for _, v := range vals {
		var err error
		if out, err = binary.Append(out, binary.LittleEndian, v); err != nil {
			panic(err)
		}
	}
	if out == nil {
		out = []byte{}
	}
	return out
}

// tt builds a tensor, panicking on an invalid one (test tables only).
func tt(d tensor.DType, shape []int64, data []byte) tensor.Tensor {
	t, err := tensor.New(d, shape, data)
	if err != nil {
		panic(err)
	}
	return t
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// mp builds a msgpack body with the library encoder, independently of the
// code under test.
func mp(write func(e *msgpack.Encoder) error) []byte {
	var buf bytes.Buffer
	if err := write(msgpack.NewEncoder(&buf)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// ndarrayMap writes an ndarray map with str or bin keys, as given.
func ndarrayMap(e *msgpack.Encoder, binKeys bool, typ string, shape []int64, data []byte) error {
	key := func(k string) error {
		if binKeys {
			return e.EncodeBytes([]byte(k))
		}
		return e.EncodeString(k)
	}
	err := errors.Join(e.EncodeMapLen(5), key("nd"), e.EncodeBool(true), key("type"), e.EncodeString(typ),
		key("kind"), e.EncodeBytes([]byte{}), key("shape"), e.EncodeArrayLen(len(shape)))
	for _, d := range shape {
		err = errors.Join(err, e.EncodeInt(d))
	}
	return errors.Join(err, key("data"), e.EncodeBytes(append([]byte{}, data...)))
}

// sameTensor compares dtype, shape (nil and empty alike) and bytes.
func sameTensor(a, b tensor.Tensor) bool {
	return a.DType == b.DType && slices.Equal(a.Shape, b.Shape) && bytes.Equal(a.Data, b.Data)
}

// treeOpts compares decoded value trees exactly: floats by bits (msgpack
// keeps NaN payloads), complex values as Python's repr keeps them, times by
// instant, location kind and offset, tensors by bytes.
var treeOpts = cmp.Options{
	cmp.Comparer(func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }),
	cmp.Comparer(func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }),
	cmp.Comparer(func(a, b Complex) bool { return formatPyComplex(complex128(a)) == formatPyComplex(complex128(b)) }),
	cmp.Comparer(func(a, b time.Time) bool {
		_, oa := a.Zone()
		_, ob := b.Zone()
		return a.Equal(b) && oa == ob && (a.Location() == NaiveLocation) == (b.Location() == NaiveLocation)
	}),
	cmp.Comparer(sameTensor),
	cmp.Comparer(func(a, b Scalar) bool { return sameTensor(a.Tensor, b.Tensor) }),
}

// aliases reports whether b points into body.
func aliases(b, body []byte) bool {
	if len(b) == 0 || len(body) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(&b[0]))
	start := uintptr(unsafe.Pointer(&body[0]))
	return p >= start && p < start+uintptr(len(body))
}

// wantMalformed fails unless err wraps ErrMalformed and contains every
// fragment.
func wantMalformed(t *testing.T, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("error = nil, want one containing %q", fragments)
	}
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("error %q does not wrap ErrMalformed", err)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not contain %q", err, f)
		}
	}
}

// testInputs is the model signature the predict-body tests decode against:
// one input per dtype, named after it.
func testInputs(name string) (tensor.DType, bool) {
	for _, d := range tensor.AllDTypes() {
		if d.String() == name {
			return d, true
		}
	}
	return tensor.Invalid, false
}
