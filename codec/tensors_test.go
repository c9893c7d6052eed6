package codec

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/modelserver/modelserver/tensor"
)

type msgpackTensorsCase struct {
	name string
	body []byte
	want map[string]tensor.Tensor
}

// body1 writes a one-input predict body {name: value}.
func body1(name string, value func(e *msgpack.Encoder) error) []byte {
	return mp(func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeMapLen(1), e.EncodeString(name), value(e))
	})
}

func anyValue(v any) func(e *msgpack.Encoder) error {
	return func(e *msgpack.Encoder) error { return e.Encode(v) }
}

func msgpackTensorsCases() []msgpackTensorsCase {
	f32 := tt(tensor.Float32, []int64{2}, le(float32(1), float32(2)))
	bf := tt(tensor.BFloat16, []int64{2}, le([]uint16{0x3f80, 0xc000}))
	bfStructured := func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeMapLen(5), e.EncodeBytes([]byte("nd")), e.EncodeBool(true),
			e.EncodeBytes([]byte("type")), e.EncodeArrayLen(1), e.EncodeArrayLen(2), e.EncodeString(""), e.EncodeString("<V2"),
			e.EncodeBytes([]byte("kind")), e.EncodeBytes([]byte("V")),
			e.EncodeBytes([]byte("shape")), e.EncodeArrayLen(1), e.EncodeInt(2),
			e.EncodeBytes([]byte("data")), e.EncodeBytes(bf.Data))
	}
	return []msgpackTensorsCase{
		{"ndarray, the wire example", append(unhex("81a7666c6f61743332"), wireF32Array...), map[string]tensor.Tensor{"float32": f32}},
		{"ndarray with str keys", body1("float32", func(e *msgpack.Encoder) error { return ndarrayMap(e, false, "<f4", []int64{2}, f32.Data) }),
			map[string]tensor.Tensor{"float32": f32}},
		{"input name as bin", mp(func(e *msgpack.Encoder) error {
			return errors.Join(e.EncodeMapLen(1), e.EncodeBytes([]byte("float32")), ndarrayMap(e, true, "<f4", []int64{2}, f32.Data))
		}), map[string]tensor.Tensor{"float32": f32}},
		{"numpy scalar becomes 0-d", append(unhex("81a5696e743332"), wireInt32Scalar...),
			map[string]tensor.Tensor{"int32": tt(tensor.Int32, []int64{}, le(int32(5)))}},
		{"ndarray keeps its own dtype", body1("float16", func(e *msgpack.Encoder) error { return ndarrayMap(e, true, "<f4", []int64{2}, f32.Data) }),
			map[string]tensor.Tensor{"float16": f32}},
		{"nested list in the declared dtype", body1("float16", anyValue([]any{[]any{1, 2.5}, []any{nil, float32(-1)}})),
			map[string]tensor.Tensor{"float16": tt(tensor.Float16, []int64{2, 2}, f16(1, 2.5, math.NaN(), -1))}},
		{"ints of every width", body1("int64", anyValue([]any{int8(-1), uint8(200), int16(-300), uint32(70000), int64(math.MinInt64), uint64(math.MaxInt64)})),
			map[string]tensor.Tensor{"int64": tt(tensor.Int64, []int64{6}, le([]int64{-1, 200, -300, 70000, math.MinInt64, math.MaxInt64}))}},
		{"uint64 above MaxInt64", body1("uint64", anyValue([]any{uint64(math.MaxUint64)})),
			map[string]tensor.Tensor{"uint64": tt(tensor.Uint64, []int64{1}, le(uint64(math.MaxUint64)))}},
		{"bools", body1("bool", anyValue([]any{true, false, 1})), map[string]tensor.Tensor{"bool": tt(tensor.Bool, []int64{3}, []byte{1, 0, 1})}},
		{"bare number", body1("complex128", anyValue(2.5)), map[string]tensor.Tensor{"complex128": tt(tensor.Complex128, []int64{}, le(complex(2.5, 0)))}},
		{"empty list", body1("int8", anyValue([]any{})), map[string]tensor.Tensor{"int8": tt(tensor.Int8, []int64{0}, nil)}},
		{"bfloat16 by name", body1("bfloat16", func(e *msgpack.Encoder) error { return ndarrayMap(e, true, "bfloat16", []int64{2}, bf.Data) }),
			map[string]tensor.Tensor{"bfloat16": bf}},
		{"bfloat16 as <V2", body1("bfloat16", func(e *msgpack.Encoder) error { return ndarrayMap(e, true, "<V2", []int64{2}, bf.Data) }),
			map[string]tensor.Tensor{"bfloat16": bf}},
		{"bfloat16 as ml_dtypes' structured descr", body1("bfloat16", bfStructured), map[string]tensor.Tensor{"bfloat16": bf}},
		{"several inputs", mp(func(e *msgpack.Encoder) error {
			return errors.Join(e.EncodeMapLen(2), e.EncodeString("uint8"), e.Encode([]any{1, 2}),
				e.EncodeString("float32"), ndarrayMap(e, true, ">f4", []int64{2}, swapped(tensor.Float32, f32.Data)))
		}), map[string]tensor.Tensor{"uint8": tt(tensor.Uint8, []int64{2}, []byte{1, 2}), "float32": f32}},
		{"empty body map", unhex("80"), map[string]tensor.Tensor{}},
	}
}

func TestDecodeTensorsMsgpack(t *testing.T) {
	for _, tc := range msgpackTensorsCases() {
		got, f, err := DecodeTensors(tc.body, true, testInputs)
		if err != nil || f != FormatMsgpack || !cmp.Equal(got, tc.want, treeOpts) {
			t.Errorf("%s: DecodeTensors = %v, %v, %v, want %v, msgpack", tc.name, got, f, err, tc.want)
		}
	}
}

func msgpackTensorsErrorCases() []errorCase {
	return []errorCase{
		{"empty", nil, []string{"Invalid msgpack payload: unexpected end of data at byte 0"}},
		{"not a map", unhex("9101"), []string{"request body must be a msgpack map of input names to tensors, got array"}},
		{"int key", unhex("810101"), []string{"map key must be str or bin, got int at byte 1"}},
		{"unknown input", body1("nope", anyValue([]any{1})), []string{`input "nope" is not an input of this model`}},
		{"trailing bytes", append(unhex("80"), 0xc0), []string{"1 extra bytes after the value at byte 1"}},
		{"str value", body1("int8", anyValue("x")), []string{`input "int8": expected an ndarray, a numpy scalar or a list of numbers, got str`}},
		{"nil value", body1("float32", anyValue(nil)), []string{`input "float32": expected an ndarray, a numpy scalar or a list of numbers, got nil`}},
		{"plain map value", body1("float32", anyValue(map[string]any{"a": 1})), []string{"got map"}},
		{"str in list", body1("int8", anyValue([]any{1, "2"})), []string{`input "int8": list element is str, not a number`}},
		{"map in list", body1("int8", anyValue([]any{map[string]any{}})), []string{"list element is map, not a number"}},
		{"does not fit", body1("uint8", anyValue([]any{256})), []string{`input "uint8": 256 does not fit uint8`}},
		{"fraction for int", body1("int16", anyValue([]any{1.5})), []string{"1.5 does not fit int16"}},
		{"nil for int", body1("int16", anyValue([]any{nil})), []string{"nil does not fit int16"}},
		{"bool for float", body1("float64", anyValue([]any{true})), []string{"true does not fit float64"}},
		{"uint64 for int64", body1("int64", anyValue([]any{uint64(math.MaxUint64)})), []string{"18446744073709551615 does not fit int64"}},
		{"ragged", body1("int8", anyValue([]any{[]any{1}, []any{1, 2}})), []string{`input "int8": ragged nested list: lists at nesting level 2 have 1 and 2 elements`}},
		{"too many levels", body1("int8", func(e *msgpack.Encoder) error {
			var err error
			for range 65 {
				err = errors.Join(err, e.EncodeArrayLen(1))
			}
			return errors.Join(err, e.EncodeInt(1))
		}), []string{"nested list has more than 64 levels"}},
		{"size mismatch names the input", body1("float32", func(e *msgpack.Encoder) error {
			return ndarrayMap(e, true, "<f4", []int64{2, 3}, make([]byte, 20))
		}), []string{`input "float32": shape (2, 3) of float32 needs 24 bytes, data has 20`}},
		{"<V2 for a float16 input", body1("float16", func(e *msgpack.Encoder) error { return ndarrayMap(e, true, "<V2", []int64{1}, []byte{0, 0}) }),
			[]string{`input "float16": dtype "<V2" (2-byte void) is accepted only for an input declared bfloat16`}},
		{"structured for a float16 input", body1("float16", func(e *msgpack.Encoder) error {
			return errors.Join(e.EncodeMapLen(5), e.EncodeBytes([]byte("nd")), e.EncodeBool(true),
				e.EncodeBytes([]byte("type")), e.EncodeArrayLen(1), e.EncodeArrayLen(2), e.EncodeString(""), e.EncodeString("<V2"),
				e.EncodeBytes([]byte("kind")), e.EncodeBytes([]byte("V")), e.EncodeBytes([]byte("shape")), e.EncodeArrayLen(0),
				e.EncodeBytes([]byte("data")), e.EncodeBytes([]byte{0, 0}))
		}), []string{"structured arrays (kind 'V') are not supported"}},
		{"truncated ndarray", body1("float32", func(e *msgpack.Encoder) error { return ndarrayMap(e, true, "<f4", []int64{2}, f32Bytes) })[:40],
			[]string{"Invalid msgpack payload: unexpected end of data at byte 40"}},
	}
}

var f32Bytes = le(float32(1), float32(2))

func TestDecodeTensorsMsgpackErrors(t *testing.T) {
	for _, tc := range msgpackTensorsErrorCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := DecodeTensors(tc.body, true, testInputs)
			if err == nil {
				t.Fatalf("DecodeTensors(% x) = %v, want an error", tc.body, got)
			}
			wantMalformed(t, err, tc.fragments...)
		})
	}
}

func TestEncodeTensorsMsgpack(t *testing.T) {
	outputs := map[string]tensor.Tensor{
		"z": tt(tensor.Float32, []int64{2}, f32Bytes),
		"a": tt(tensor.Int8, []int64{}, []byte{0xff}),
	}
	got, err := EncodeTensors(outputs, []string{"z", "a"}, FormatMsgpack)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(unhex("82 a17a"), wireF32Array...),
		unhex("a161 85 c4026e64c3 c40474797065a37c6931 c4046b696e64c400 c4057368617065 90 c40464617461c401ff")...)
	if !bytes.Equal(got, want) {
		t.Errorf("EncodeTensors = % x\nwant            % x", got, want)
	}
	back, f, err := DecodeTensors(got, true, testInputsAnyName)
	if err != nil || f != FormatMsgpack || !cmp.Equal(back, outputs, treeOpts) {
		t.Errorf("DecodeTensors(EncodeTensors) = %v, %v, %v, want %v", back, f, err, outputs)
	}
}

// testInputsAnyName accepts every name as a float32 input.
func testInputsAnyName(string) (tensor.DType, bool) { return tensor.Float32, true }

func TestEncodeTensorsErrors(t *testing.T) {
	one := map[string]tensor.Tensor{"y": tt(tensor.Float32, []int64{1}, le(float32(1)))}
	for _, tc := range []struct {
		name    string
		outputs map[string]tensor.Tensor
		order   []string
		f       Format
		want    string
	}{
		{"missing", one, []string{"y", "x"}, FormatMsgpack, `output "x" is missing`},
		{"twice", one, []string{"y", "y"}, FormatMsgpack, `output "y" is listed twice`},
		{"unlisted", one, nil, FormatJSONLists, "the order does not list every output"},
		{"invalid", map[string]tensor.Tensor{"y": {DType: tensor.Int8, Shape: []int64{2}, Data: []byte{1}}}, []string{"y"}, FormatJSONArrayField,
			`output "y": data has 1 bytes`},
		{"complex as lists", map[string]tensor.Tensor{"c": tt(tensor.Complex64, []int64{}, make([]byte, 8))}, []string{"c"}, FormatJSONLists,
			`output "c": complex64 cannot be written as JSON lists`},
		{"zero-size blow-up", map[string]tensor.Tensor{"e": tt(tensor.Float32, []int64{1 << 40, 0}, nil)}, []string{"e"}, FormatJSONLists,
			"zero-size shape (1099511627776, 0) would need more than 1048576 JSON lists"},
		{"unknown format", one, []string{"y"}, Format(7), "unknown format Format(7)"},
	} {
		_, err := EncodeTensors(tc.outputs, tc.order, tc.f)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrMalformed) {
			t.Errorf("%s: EncodeTensors error = %v, want one containing %q and not ErrMalformed", tc.name, err, tc.want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		f                 Format
		contentType, name string
	}{
		{FormatMsgpack, "application/octet-stream", "msgpack"},
		{FormatJSONLists, "application/json", "json-lists"},
		{FormatJSONArrayField, "application/json", "json-array-field"},
	} {
		if got := tc.f.ContentType(); got != tc.contentType {
			t.Errorf("%v.ContentType() = %q, want %q", tc.f, got, tc.contentType)
		}
		if got := tc.f.String(); got != tc.name {
			t.Errorf("Format(%d).String() = %q, want %q", int(tc.f), got, tc.name)
		}
	}
}
