package codec

import (
	"bytes"
	"testing"
	"unsafe"

	"github.com/modelserver/modelserver/tensor"
)

// TestDecodeTensorsInPlace checks that every alignment and byte order decodes
// to the same tensor as DecodeTensors, aliasing the body rather than a copy.
func TestDecodeTensorsInPlace(t *testing.T) {
	values := tt(tensor.Float64, []int64{3}, le([]float64{1.5, -2, 1e300}))
	for _, bigEndian := range []bool{false, true} {
		for pad := 1; pad <= 8; pad++ {
			in := values
			if bigEndian {
				in = tensor.Tensor{DType: in.DType, Shape: in.Shape, Data: bytes.Clone(in.Data)}
				tensor.SwapBytes(in.DType, in.Data)
			}
			body := inPlaceBody(t, string(bytes.Repeat([]byte("x"), pad)), in, bigEndian)
			want, _, err := DecodeTensors(bytes.Clone(body), true, anyDType(tensor.Float64))
			if err != nil {
				t.Fatal(err)
			}
			owned := copyAligned(body, 64)
			got, _, err := DecodeTensorsInPlace(owned, true, anyDType(tensor.Float64))
			if err != nil {
				t.Fatalf("pad %d big-endian %v: %v", pad, bigEndian, err)
			}
			for name, g := range got {
				if !bytes.Equal(g.Data, want[name].Data) || !bytes.Equal(g.Data, values.Data) {
					t.Errorf("pad %d big-endian %v: %v, want %v", pad, bigEndian, g.Data, values.Data)
				}
				start := uintptr(unsafe.Pointer(unsafe.SliceData(owned)))
				p := uintptr(unsafe.Pointer(unsafe.SliceData(g.Data)))
				if p < start || p >= start+uintptr(len(owned)) || p%8 != 0 {
					t.Errorf("pad %d big-endian %v: data is not an aligned view into the body", pad, bigEndian)
				}
			}
		}
	}
}

// inPlaceBody encodes {name: t} as msgpack_numpy does, with a big-endian
// typestr when asked.
func inPlaceBody(t *testing.T, name string, x tensor.Tensor, bigEndian bool) []byte {
	t.Helper()
	typ := "<f8"
	if bigEndian {
		typ = ">f8"
	}
	v := map[string]any{name: map[string]any{"nd": true, "type": typ, "kind": []byte{}, "shape": []any{int64(3)}, "data": x.Data}}
	body, err := EncodeMsgpack(v)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func anyDType(d tensor.DType) func(string) (tensor.DType, bool) {
	return func(string) (tensor.DType, bool) { return d, true }
}
