package codec

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/modelserver/modelserver/tensor"
)

// Format says how a predict body was encoded, so the answer can use the
// same one.
type Format int

const (
	// FormatMsgpack is msgpack with msgpack_numpy ndarrays
	// (Content-Type application/octet-stream).
	FormatMsgpack Format = iota
	// FormatJSONLists is JSON with tensors as nested lists of numbers.
	FormatJSONLists
	// FormatJSONArrayField is JSON with tensors as NumpyArrayField objects
	// {"data_b64", "shape", "dtype"}.
	FormatJSONArrayField
)

// ContentType is the Content-Type of a body in format f, as Truss sends it
// (no charset).
func (f Format) ContentType() string {
	if f == FormatMsgpack {
		return "application/octet-stream"
	}
	return "application/json"
}

func (f Format) String() string {
	switch f {
	case FormatMsgpack:
		return "msgpack"
	case FormatJSONLists:
		return "json-lists"
	case FormatJSONArrayField:
		return "json-array-field"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// DecodeTensors decodes a predict body: a map from input name to tensor,
// msgpack when binary is set, JSON otherwise.
//
// Each input may be
//   - msgpack: an ndarray or numpy scalar (a scalar becomes a 0-d tensor),
//     or an array of numbers nested to any depth;
//   - JSON: a nested list of numbers or a NumpyArrayField object;
//   - either: a bare number, which becomes a 0-d tensor.
//
// dtypeOf gives the model's declared dtype of an input; ok=false means the
// name is not an input and fails the decode. Lists are converted to the
// declared dtype (null, NaN and ±Infinity are accepted for float dtypes;
// values that do not fit, such as 1.5 or 300 for uint8, are errors); an
// ndarray, numpy scalar or NumpyArrayField keeps the dtype it was sent with,
// for the caller to check, except that a 2-byte void dtype (how numpy
// without ml_dtypes sends bfloat16) is read as bfloat16 for an input
// declared bfloat16. DecodeTensors does not check that every input is
// present.
//
// The Format is FormatJSONArrayField when any JSON input used it, so that
// the answer mirrors the request. Errors wrap ErrMalformed.
func DecodeTensors(body []byte, binary bool, dtypeOf func(name string) (tensor.DType, bool)) (map[string]tensor.Tensor, Format, error) {
	if binary {
		out, err := decodeTensorsMsgpack(body, dtypeOf)
		return out, FormatMsgpack, err
	}
	out, arrayField, err := decodeTensorsJSON(body, dtypeOf)
	if arrayField {
		return out, FormatJSONArrayField, err
	}
	return out, FormatJSONLists, err
}

// DecodeTensorsInPlace is DecodeTensors for a body the caller hands over: to
// let tensors alias the body instead of copying them, it may move unaligned
// msgpack tensor data a few bytes within the body and byte-swap big-endian
// data there. Afterwards the body's bytes must only be used through the
// returned tensors.
func DecodeTensorsInPlace(body []byte, binary bool, dtypeOf func(name string) (tensor.DType, bool)) (map[string]tensor.Tensor, Format, error) {
	if binary {
		out, err := decodeTensorsMsgpackMode(body, dtypeOf, true)
		return out, FormatMsgpack, err
	}
	return DecodeTensors(body, binary, dtypeOf)
}

func decodeTensorsMsgpack(body []byte, dtypeOf func(string) (tensor.DType, bool)) (map[string]tensor.Tensor, error) {
	return decodeTensorsMsgpackMode(body, dtypeOf, false)
}

func decodeTensorsMsgpackMode(body []byte, dtypeOf func(string) (tensor.DType, bool), inPlace bool) (map[string]tensor.Tensor, error) {
	r := mpReader{buf: body, inPlace: inPlace}
	h, err := r.header()
	if err != nil {
		return nil, err
	}
	if h.kind != mpMap {
		return nil, malformed("request body must be a msgpack map of input names to tensors, got %s", mpKindNames[h.kind])
	}
	if err := r.enter(h.at); err != nil {
		return nil, err
	}
	out := make(map[string]tensor.Tensor, h.n)
	for range h.n {
		name, err := r.key()
		if err != nil {
			return nil, err
		}
		declared, ok := dtypeOf(name)
		if !ok {
			return nil, malformed("input %q is not an input of this model", name)
		}
		if out[name], err = r.inputTensor(name, declared); err != nil {
			return nil, err
		}
	}
	return out, r.end()
}

// inputTensor decodes the value of one input.
func (r *mpReader) inputTensor(name string, declared tensor.DType) (tensor.Tensor, error) {
	r.input, r.voidAs = name, voidFor(declared)
	defer func() { r.input, r.voidAs = "", tensor.Invalid }()
	start := r.off
	h, err := r.header()
	if err != nil {
		return tensor.Tensor{}, err
	}
	switch h.kind {
	case mpArray, mpInt, mpUint, mpFloat32, mpFloat64, mpBool:
		b := newListBuilder(declared)
		if h.kind == mpArray {
			err = r.list(b, h)
		} else {
			err = r.leaf(b, h)
		}
		if err != nil {
			return tensor.Tensor{}, err
		}
		t, err := b.tensor()
		if err != nil {
			return tensor.Tensor{}, r.valueErr(start, err)
		}
		return t, nil
	}
	r.off = start
	v, err := r.value()
	if err != nil {
		return tensor.Tensor{}, err
	}
	switch v := v.(type) {
	case tensor.Tensor:
		return v, nil
	case Scalar:
		return v.Tensor, nil
	}
	return tensor.Tensor{}, r.valueErr(start, fmt.Errorf("expected an ndarray, a numpy scalar or a list of numbers, got %s", typeName(v)))
}

// list decodes a msgpack array of numbers, nested to any depth, into b.
func (r *mpReader) list(b *listBuilder, h mpHeader) error {
	if err := b.open(); err != nil {
		return r.valueErr(h.at, err)
	}
	for range h.n {
		e, err := r.header()
		if err != nil {
			return err
		}
		if e.kind == mpArray {
			err = r.list(b, e)
		} else {
			err = r.leaf(b, e)
		}
		if err != nil {
			return err
		}
	}
	if err := b.close(h.n); err != nil {
		return r.valueErr(h.at, err)
	}
	return nil
}

func (r *mpReader) leaf(b *listBuilder, h mpHeader) error {
	if err := b.leaf(); err != nil {
		return r.valueErr(h.at, err)
	}
	var ok bool
	var text string
	switch h.kind {
	case mpInt:
		ok, text = b.putInt(h.i < 0, absInt64(h.i)), strconv.FormatInt(h.i, 10)
	case mpUint:
		ok, text = b.putInt(false, h.u), strconv.FormatUint(h.u, 10)
	case mpFloat32, mpFloat64:
		ok, text = b.putFloat(h.f), strconv.FormatFloat(h.f, 'g', -1, 64)
	case mpBool:
		ok, text = b.putBool(h.b), strconv.FormatBool(h.b)
	case mpNil:
		ok, text = b.putNull(), "nil"
	default:
		return r.valueErr(h.at, fmt.Errorf("list element is %s, not a number", mpKindNames[h.kind]))
	}
	if !ok {
		return r.valueErr(h.at, fmt.Errorf("%s does not fit %v", text, b.dtype))
	}
	return nil
}

func absInt64(i int64) uint64 {
	if i < 0 {
		return -uint64(i)
	}
	return uint64(i)
}

// EncodeTensors encodes a predict answer in format f: a map from output
// name to tensor, with keys in the given order (the model's output order).
// order must name every output exactly once.
//
//   - FormatMsgpack: msgpack_numpy ndarray maps under str keys.
//   - FormatJSONLists: nested lists, laid out as Python's json.dumps does
//     ({"y": [1.0, 2.5]}); floats in the shortest form that round-trips
//     their dtype (float16 and bfloat16 via float32) with Python's repr
//     layout; NaN and ±Inf as null; a 0-d tensor as a bare number; complex
//     tensors cannot be written.
//   - FormatJSONArrayField: compact NumpyArrayField objects as pydantic
//     writes them ({"y":{"data_b64":"...","shape":[2],"dtype":"float32"}}).
func EncodeTensors(outputs map[string]tensor.Tensor, order []string, f Format) ([]byte, error) {
	if err := checkOrder(outputs, order); err != nil {
		return nil, err
	}
	switch f {
	case FormatMsgpack:
		return encodeTensorsMsgpack(outputs, order)
	case FormatJSONLists:
		return encodeTensorsJSONLists(outputs, order)
	case FormatJSONArrayField:
		return encodeTensorsArrayField(outputs, order)
	}
	return nil, fmt.Errorf("codec: unknown format %v", f)
}

func checkOrder(outputs map[string]tensor.Tensor, order []string) error {
	seen := make(map[string]bool, len(order))
	for _, name := range order {
		if _, ok := outputs[name]; !ok {
			return fmt.Errorf("codec: output %q is missing", name)
		}
		if seen[name] {
			return fmt.Errorf("codec: output %q is listed twice in the order", name)
		}
		seen[name] = true
	}
	if len(order) != len(outputs) {
		return errors.New("codec: the order does not list every output")
	}
	for name, t := range outputs {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("codec: output %q: %w", name, err)
		}
	}
	return nil
}

func encodeTensorsMsgpack(outputs map[string]tensor.Tensor, order []string) ([]byte, error) {
	size := 5
	for _, name := range order {
		size += len(name) + len(outputs[name].Data) + 9*len(outputs[name].Shape) + 64
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	e := msgpack.NewEncoder(buf)
	if err := e.EncodeMapLen(len(order)); err != nil {
		return nil, err
	}
	for _, name := range order {
		if err := errors.Join(encodeKey(e, name), encodeNDArray(e, outputs[name])); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}
