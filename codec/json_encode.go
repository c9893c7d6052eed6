package codec

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/modelserver/modelserver/tensor"
)

// maxEmptyLists bounds the "[]" a zero-size tensor may expand to: its Data
// is empty, so a shape like (2^40, 0) would otherwise turn a tiny tensor
// into terabytes of JSON.
const maxEmptyLists = 1 << 20

func encodeTensorsJSONLists(outputs map[string]tensor.Tensor, order []string) ([]byte, error) {
	size := 2
	for _, name := range order {
		t := outputs[name]
		if err := checkListable(t); err != nil {
			return nil, fmt.Errorf("codec: output %q: %w", name, err)
		}
		size += len(name) + 8 + int(t.NumElements())*listElemWidth(t.DType)
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, name := range order {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendJSONString(b, name)
		b = append(b, ": "...)
		t := outputs[name]
		b = appendList(b, t.Shape, t.Data, t.DType.Size(), listElem(t.DType))
	}
	return append(b, '}'), nil
}

func checkListable(t tensor.Tensor) error {
	if t.DType == tensor.Complex64 || t.DType == tensor.Complex128 {
		return fmt.Errorf("%v cannot be written as JSON lists (JSON has no complex numbers)", t.DType)
	}
	if t.NumElements() == 0 {
		lists, level := int64(1), int64(1)
		for _, d := range t.Shape {
			if d == 0 {
				break
			}
			level *= d
			lists += level
			if lists > maxEmptyLists {
				return fmt.Errorf("zero-size shape %s would need more than %d JSON lists", tensor.ShapeString(t.Shape), maxEmptyLists)
			}
		}
	}
	return nil
}

// listElemWidth guesses the JSON bytes per element, to size the buffer.
func listElemWidth(d tensor.DType) int {
	switch d {
	case tensor.Bool:
		return 7
	case tensor.Float32, tensor.Float16, tensor.BFloat16:
		return 14
	case tensor.Float64, tensor.Int64, tensor.Uint64:
		return 22
	}
	return 6
}

// appendList writes data as nested lists of the given shape, separated as
// json.dumps separates them; a 0-d tensor is its bare element.
func appendList(b []byte, shape []int64, data []byte, size int, elem func([]byte, []byte) []byte) []byte {
	if len(shape) == 0 {
		return elem(b, data[:size])
	}
	b = append(b, '[')
	n := int(shape[0])
	if len(shape) == 1 {
		for i := range n {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = elem(b, data[i*size:(i+1)*size])
		}
		return append(b, ']')
	}
	stride := 0
	if n > 0 {
		stride = len(data) / n
	}
	for i := range n {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendList(b, shape[1:], data[i*stride:(i+1)*stride], size, elem)
	}
	return append(b, ']')
}

// listElem returns the writer of one element of dtype d.
func listElem(d tensor.DType) func(b, e []byte) []byte {
	le := binary.LittleEndian
	switch d {
	case tensor.Bool:
		return func(b, e []byte) []byte { return strconv.AppendBool(b, e[0] != 0) }
	case tensor.Int8:
		return func(b, e []byte) []byte { return strconv.AppendInt(b, int64(int8(e[0])), 10) }
	case tensor.Int16:
		return func(b, e []byte) []byte { return strconv.AppendInt(b, int64(int16(le.Uint16(e))), 10) }
	case tensor.Int32:
		return func(b, e []byte) []byte { return strconv.AppendInt(b, int64(int32(le.Uint32(e))), 10) }
	case tensor.Int64:
		return func(b, e []byte) []byte { return strconv.AppendInt(b, int64(le.Uint64(e)), 10) }
	case tensor.Uint8:
		return func(b, e []byte) []byte { return strconv.AppendUint(b, uint64(e[0]), 10) }
	case tensor.Uint16:
		return func(b, e []byte) []byte { return strconv.AppendUint(b, uint64(le.Uint16(e)), 10) }
	case tensor.Uint32:
		return func(b, e []byte) []byte { return strconv.AppendUint(b, uint64(le.Uint32(e)), 10) }
	case tensor.Uint64:
		return func(b, e []byte) []byte { return strconv.AppendUint(b, le.Uint64(e), 10) }
	case tensor.Float16:
		return func(b, e []byte) []byte { return appendJSONFloat(b, float64(float16ToFloat32(le.Uint16(e))), 32) }
	case tensor.BFloat16:
		return func(b, e []byte) []byte { return appendJSONFloat(b, float64(bfloat16ToFloat32(le.Uint16(e))), 32) }
	case tensor.Float32:
		return func(b, e []byte) []byte { return appendJSONFloat(b, float64(math.Float32frombits(le.Uint32(e))), 32) }
	}
	// Float64; checkListable has turned complex away.
	return func(b, e []byte) []byte { return appendJSONFloat(b, math.Float64frombits(le.Uint64(e)), 64) }
}

// appendJSONFloat writes f as Python's float repr (so 1.0 stays a float for
// the client) with the digits of bitSize, and NaN and ±Inf as null, which
// strict JSON parsers accept and orjson writes.
func appendJSONFloat(b []byte, f float64, bitSize int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return appendPyFloat(b, f, bitSize, true)
}

// appendJSONString writes s as json.dumps does with ensure_ascii: every
// rune outside printable ASCII is escaped, astral runes as surrogate pairs
// (invalid UTF-8, which a Python str cannot hold, becomes U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r == '\b':
			b = append(b, `\b`...)
		case r == '\f':
			b = append(b, `\f`...)
		case r >= 0x20 && r < 0x7f:
			b = append(b, byte(r))
		case r > 0xffff:
			r1, r2 := surrogates(r)
			b = appendU4(b, r1, hex)
			b = appendU4(b, r2, hex)
		default:
			b = appendU4(b, r, hex)
		}
	}
	return append(b, '"')
}

func surrogates(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + (r>>10)&0x3ff, 0xdc00 + r&0x3ff
}

func appendU4(b []byte, r rune, hex string) []byte {
	return append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
}

func encodeTensorsArrayField(outputs map[string]tensor.Tensor, order []string) ([]byte, error) {
	size := 2
	for _, name := range order {
		t := outputs[name]
		size += len(name) + 64 + 21*len(t.Shape) + base64.StdEncoding.EncodedLen(len(t.Data))
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, name := range order {
		if i > 0 {
			b = append(b, ',')
		}
		t := outputs[name]
		b = appendJSONString(b, name)
		b = append(b, `:{"data_b64":"`...)
		b = base64.StdEncoding.AppendEncode(b, t.Data)
		b = append(b, `","shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, `],"dtype":`...)
		b = appendJSONString(b, t.DType.String())
		b = append(b, '}')
	}
	return append(b, '}'), nil
}
