package codec

import (
	"bytes"
	"fmt"
	"unsafe"

	"github.com/modelserver/modelserver/tensor"
)

// maxDims bounds the rank of any decoded tensor; numpy 2 allows 64.
const maxDims = 64

// resolveDType parses a dtype as sent in an ndarray's "type" or a
// NumpyArrayField's "dtype": a numpy name ("float32", "bfloat16") or a
// typestr ("<f4", ">i8", "|b1"). bigEndian reports data that must be
// byte-swapped. A 2-byte void typestr ("<V2", "|V2") is how numpy without
// ml_dtypes spells bfloat16; it is accepted only where voidAs is BFloat16,
// that is for an input the model declares bfloat16, because elsewhere it
// could be any 2-byte opaque type.
func resolveDType(s string, voidAs tensor.DType) (d tensor.DType, bigEndian bool, err error) {
	if isVoid2(s) {
		if voidAs == tensor.BFloat16 {
			return tensor.BFloat16, false, nil
		}
		return tensor.Invalid, false, fmt.Errorf("dtype %q (2-byte void) is accepted only for an input declared bfloat16", s)
	}
	return tensor.ParseDType(s)
}

func isVoid2(s string) bool {
	switch s {
	case "V2", "<V2", "|V2", "=V2":
		return true
	}
	return false
}

// wireTypestr is the "type" written for d. bfloat16 is written by name,
// which numpy parses once ml_dtypes is imported; its typestr "<V2" would
// decode as an opaque void type.
func wireTypestr(d tensor.DType) string {
	if d == tensor.BFloat16 {
		return d.String()
	}
	return d.Typestr()
}

// makeTensor checks data against dtype and shape and returns the tensor,
// aliasing data when it is aligned and needs no byte swap.
func makeTensor(d tensor.DType, bigEndian bool, shape []int64, data []byte) (tensor.Tensor, error) {
	want, err := tensor.ByteSize(d, shape)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("shape %s of %v: %w", tensor.ShapeString(shape), d, err)
	}
	if want != len(data) {
		return tensor.Tensor{}, fmt.Errorf("shape %s of %v needs %d bytes, data has %d",
			tensor.ShapeString(shape), d, want, len(data))
	}
	if d == tensor.Bool {
		if err := checkBools(data); err != nil {
			return tensor.Tensor{}, err
		}
	}
	if bigEndian || !isAligned(data, d.Size()) {
		data = copyAligned(data, d.Size())
		if bigEndian {
			tensor.SwapBytes(d, data)
		}
	}
	return tensor.Tensor{DType: d, Shape: shape, Data: data}, nil
}

// checkBools rejects bool bytes other than 0 and 1, which numpy would carry
// along but which kernels may not expect.
func checkBools(data []byte) error {
	for i, c := range data {
		if c > 1 {
			return fmt.Errorf("bool element %d is byte %#02x, want 0 or 1", i, c)
		}
	}
	return nil
}

// isAligned reports whether b's first byte sits at a multiple of align (a
// power of two), so that b may be viewed as a slice of elements in place.
func isAligned(b []byte, align int) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))&uintptr(align-1) == 0
}

// alignedBytes returns n zeroed bytes starting at a multiple of align (a
// power of two). Go guarantees no alignment for []byte, and the tiny
// allocator places small ones at odd addresses.
func alignedBytes(n, align int) []byte {
	buf := make([]byte, n+align-1)
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(buf))) & uintptr(align-1))
	return buf[off : off+n : off+n]
}

// copyAligned returns a copy of data aligned to align. bytes.Clone skips
// the zeroing that alignedBytes pays for, and a large allocation starts on
// a page boundary, so for big tensors the first try always succeeds.
func copyAligned(data []byte, align int) []byte {
	if out := bytes.Clone(data); isAligned(out, align) {
		return out
	}
	out := alignedBytes(len(data), align)
	copy(out, data)
	return out
}
