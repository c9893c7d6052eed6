package codec

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/modelserver/modelserver/tensor"
)

type tensorsCase struct {
	name string
	body string
	want map[string]tensor.Tensor
}

func f16(v ...float64) []byte {
	out := make([]uint16, len(v))
	for i, f := range v {
		out[i] = float64ToFloat16(f)
	}
	return le(out)
}

var jsonListCases = []tensorsCase{
	{"bool", `{"bool": [[true, false], [1, 0]]}`, map[string]tensor.Tensor{"bool": tt(tensor.Bool, []int64{2, 2}, []byte{1, 0, 1, 0})}},
	{"int8", `{"int8": [-128, 127, 0, 1.0, -0.0, 1e2]}`, map[string]tensor.Tensor{"int8": tt(tensor.Int8, []int64{6}, le([]int8{-128, 127, 0, 1, 0, 100}))}},
	{"int16", `{"int16": [-32768, 32767]}`, map[string]tensor.Tensor{"int16": tt(tensor.Int16, []int64{2}, le([]int16{-32768, 32767}))}},
	{"int32", `{"int32": [-2147483648, 2147483647, 1E3]}`, map[string]tensor.Tensor{"int32": tt(tensor.Int32, []int64{3}, le([]int32{math.MinInt32, math.MaxInt32, 1000}))}},
	{"int64 exact", `{"int64": [-9223372036854775808, 9223372036854775807, 9007199254740993]}`,
		map[string]tensor.Tensor{"int64": tt(tensor.Int64, []int64{3}, le([]int64{math.MinInt64, math.MaxInt64, 9007199254740993}))}},
	{"uint8", `{"uint8": [0, 255]}`, map[string]tensor.Tensor{"uint8": tt(tensor.Uint8, []int64{2}, []byte{0, 255})}},
	{"uint16", `{"uint16": [65535]}`, map[string]tensor.Tensor{"uint16": tt(tensor.Uint16, []int64{1}, le([]uint16{65535}))}},
	{"uint32", `{"uint32": [4294967295]}`, map[string]tensor.Tensor{"uint32": tt(tensor.Uint32, []int64{1}, le([]uint32{math.MaxUint32}))}},
	{"uint64", `{"uint64": [18446744073709551615, 1.8446744073709550e19]}`,
		map[string]tensor.Tensor{"uint64": tt(tensor.Uint64, []int64{2}, le([]uint64{math.MaxUint64, 18446744073709549568}))}},
	{"float16", `{"float16": [0.1, 65519.999, 65520, null, -Infinity, 1e-8, 6e-8]}`,
		map[string]tensor.Tensor{"float16": tt(tensor.Float16, []int64{7}, f16(0.1, 65504, math.Inf(1), math.NaN(), math.Inf(-1), 0, 0x1p-24))}},
	{"bfloat16", `{"bfloat16": [1.00390625, -0.1, NaN]}`,
		map[string]tensor.Tensor{"bfloat16": tt(tensor.BFloat16, []int64{3}, le([]uint16{0x3f80, 0xbdcd, 0x7fc0}))}},
	{"float32", `{"float32": [0.1, 1e39, -0.0, 16777217, Infinity, 1e-46]}`,
		map[string]tensor.Tensor{"float32": tt(tensor.Float32, []int64{6}, le([]float32{0.1, float32(math.Inf(1)), float32(math.Copysign(0, -1)), 16777216, float32(math.Inf(1)), 0}))}},
	{"float64", `{"float64": [0.1, 1e400, 5e-324, 9007199254740993, -1.5E-3]}`,
		map[string]tensor.Tensor{"float64": tt(tensor.Float64, []int64{5}, le([]float64{0.1, math.Inf(1), 5e-324, 9007199254740992, -0.0015}))}},
	{"complex64", `{"complex64": [1.5, null]}`,
		map[string]tensor.Tensor{"complex64": tt(tensor.Complex64, []int64{2}, le([]complex64{1.5, complex(float32(math.NaN()), 0)}))}},
	{"complex128", `{"complex128": [[2]]}`, map[string]tensor.Tensor{"complex128": tt(tensor.Complex128, []int64{1, 1}, le([]complex128{2}))}},
	{"0-d", `{"float32": 2.5, "bool": false}`, map[string]tensor.Tensor{
		"float32": tt(tensor.Float32, []int64{}, le(float32(2.5))), "bool": tt(tensor.Bool, []int64{}, []byte{0})}},
	{"zero-size", `{"float32": [], "int8": [[], []]}`, map[string]tensor.Tensor{
		"float32": tt(tensor.Float32, []int64{0}, nil), "int8": tt(tensor.Int8, []int64{2, 0}, nil)}},
	{"deep", `{"int8": [[[[[7]]]]]}`, map[string]tensor.Tensor{"int8": tt(tensor.Int8, []int64{1, 1, 1, 1, 1}, []byte{7})}},
	{"whitespace and BOM", "\ufeff \r\n{ \"uint8\" :\t[ [ 1 ,2 ] ,\n[3, 4 ] ] }\n ",
		map[string]tensor.Tensor{"uint8": tt(tensor.Uint8, []int64{2, 2}, []byte{1, 2, 3, 4})}},
	{"empty object", `{}`, map[string]tensor.Tensor{}},
	{"duplicate key: last wins", `{"int8": [1], "int8": [2, 3]}`, map[string]tensor.Tensor{"int8": tt(tensor.Int8, []int64{2}, []byte{2, 3})}},
	{"escaped name", `{"in\u0074\/8": [1]}`, nil}, // "int/8" is not an input: see the error cases
	{"escaped input name", `{"\u0069nt8": [1]}`, map[string]tensor.Tensor{"int8": tt(tensor.Int8, []int64{1}, []byte{1})}},
}

func TestDecodeTensorsJSONLists(t *testing.T) {
	for _, tc := range jsonListCases {
		if tc.want == nil {
			continue
		}
		got, f, err := DecodeTensors([]byte(tc.body), false, testInputs)
		if err != nil || f != FormatJSONLists || !cmp.Equal(got, tc.want, treeOpts) {
			t.Errorf("%s: DecodeTensors(%s) = %v, %v, %v; want %v, json-lists", tc.name, tc.body, got, f, err, tc.want)
		}
	}
}

// arrayField writes a NumpyArrayField object.
func arrayField(data []byte, shape, dtype string) string {
	return fmt.Sprintf(`{"data_b64": %q, "shape": %s, "dtype": %q}`, base64.StdEncoding.EncodeToString(data), shape, dtype)
}

func jsonArrayFieldCases() []tensorsCase {
	var cases []tensorsCase
	for _, d := range tensor.AllDTypes() {
		want := tt(d, []int64{2, 3}, sampleData(d, 6))
		cases = append(cases,
			tensorsCase{d.String() + " by name", fmt.Sprintf(`{%q: %s}`, d, arrayField(want.Data, "[2, 3]", d.String())),
				map[string]tensor.Tensor{d.String(): want}})
		if d != tensor.BFloat16 {
			cases = append(cases, tensorsCase{d.String() + " by typestr", fmt.Sprintf(`{%q: %s}`, d, arrayField(want.Data, "[2,3]", d.Typestr())),
				map[string]tensor.Tensor{d.String(): want}})
		}
		if d.Size() > 1 && d != tensor.BFloat16 {
			cases = append(cases, tensorsCase{d.String() + " big-endian",
				fmt.Sprintf(`{%q: %s}`, d, arrayField(swapped(d, want.Data), "[2, 3]", ">"+d.Typestr()[1:])),
				map[string]tensor.Tensor{d.String(): want}})
		}
	}
	bf := tt(tensor.BFloat16, []int64{2}, le([]uint16{0x3f80, 0xc000}))
	return append(cases,
		tensorsCase{"bfloat16 as <V2", `{"bfloat16": ` + arrayField(bf.Data, "[2]", "<V2") + `}`, map[string]tensor.Tensor{"bfloat16": bf}},
		tensorsCase{"extra members, any order, int shape",
			`{"int8": {"x": [1, {"y": null, "z": [true, false, NaN, Infinity, -Infinity, "s\"", -1.5e3, {}, []]}], "dtype": "int8", "shape": 3, "data_b64": "AQID"}}`,
			map[string]tensor.Tensor{"int8": tt(tensor.Int8, []int64{3}, []byte{1, 2, 3})}},
		tensorsCase{"0-d and zero-size", `{"float64": {"data_b64": "AAAAAAAA8D8=", "shape": [], "dtype": "float64"}, "int8": {"data_b64": "", "shape": [0, 5], "dtype": "int8"}}`,
			map[string]tensor.Tensor{"float64": tt(tensor.Float64, []int64{}, le(1.0)), "int8": tt(tensor.Int8, []int64{0, 5}, nil)}},
		tensorsCase{"line breaks and escaped slash in base64", `{"uint8": {"data_b64": "\/\/8A\r\n\/w==", "shape": [4], "dtype": "|u1"}}`,
			map[string]tensor.Tensor{"uint8": tt(tensor.Uint8, []int64{4}, []byte{255, 255, 0, 255})}},
	)
}

func TestDecodeTensorsJSONArrayField(t *testing.T) {
	for _, tc := range jsonArrayFieldCases() {
		got, f, err := DecodeTensors([]byte(tc.body), false, testInputs)
		if err != nil || f != FormatJSONArrayField || !cmp.Equal(got, tc.want, treeOpts) {
			t.Errorf("%s: DecodeTensors(%s) = %v, %v, %v; want %v, json-array-field", tc.name, tc.body, got, f, err, tc.want)
		}
		for name, v := range got {
			if !isAligned(v.Data, v.DType.Size()) {
				t.Errorf("%s: input %q data is not aligned", tc.name, name)
			}
		}
	}
	// One NumpyArrayField makes the whole answer use them.
	_, f, err := DecodeTensors([]byte(`{"int8": [1], "uint8": {"data_b64": "AQ==", "shape": [1], "dtype": "uint8"}}`), false, testInputs)
	if err != nil || f != FormatJSONArrayField {
		t.Errorf("mixed body: format %v, %v, want json-array-field", f, err)
	}
}

var jsonErrorCases = []errorCase{
	{"empty", []byte(""), []string{"Invalid JSON payload: Expecting value: line 1 column 1 (char 0)"}},
	{"array body", []byte(`[1, 2]`), []string{"request body must be a JSON object mapping input names to tensors, got an array"}},
	{"string body", []byte(`"x"`), []string{"got a string"}},
	{"number body", []byte(` -1.5e3 `), []string{"got a number"}},
	{"invalid non-object body", []byte(`[1, }`), []string{"Invalid JSON payload: Expecting value: line 1 column 5 (char 4)"}},
	{"extra data", []byte(`{"float32": [1, 2]} x`), []string{"Invalid JSON payload: Extra data: line 1 column 21 (char 20)"}},
	{"unclosed list", []byte(`{"float32": [1, 2}`), []string{"Expecting ',' delimiter: line 1 column 18 (char 17)"}},
	{"missing colon", []byte(`{"float32" [1]}`), []string{"Expecting ':' delimiter: line 1 column 12 (char 11)"}},
	{"trailing comma", []byte(`{"float32": [1],}`), []string{"Expecting property name enclosed in double quotes: line 1 column 17 (char 16)"}},
	{"bare key", []byte(`{float32: 1}`), []string{"Expecting property name enclosed in double quotes"}},
	{"trailing comma in list", []byte(`{"float32": [1, ]}`), []string{"Expecting value: line 1 column 17 (char 16)"}},
	{"leading zero", []byte(`{"float32": [01]}`), []string{"Expecting ',' delimiter"}},
	{"bad literal", []byte(`{"float32": [nan]}`), []string{"Expecting value"}},
	{"control char", []byte("{\"a\x01\": 1}"), []string{"Invalid control character at: line 1 column 4 (char 3)"}},
	{"bad escape", []byte(`{"a\q": 1}`), []string{`Invalid \escape: line 1 column 4 (char 3)`}},
	{"bad unicode escape", []byte(`{"\u12": 1}`), []string{`Invalid \uXXXX escape`}},
	{"unterminated string", []byte(`{"abc`), []string{"Unterminated string starting at: line 1 column 2 (char 1)"}},
	{"invalid UTF-8", []byte("{\"\xff\": 1}"), []string{"Invalid UTF-8 in string starting at"}},
	{"position on line 3", []byte("{\n  \"float32\": [1,\n  x]}"), []string{"Expecting value: line 3 column 3 (char 21)"}},
	{"unknown input", []byte(`{"nope": [1]}`), []string{`input "nope" is not an input of this model`}},
	{"every escape in a name", []byte(`{"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800x": 1}`),
		[]string{fmt.Sprintf("input %q is not", "\"\\/\b\f\n\r\té😀�x")}},
	{"bool body", []byte(`true`), []string{"got a bool"}},
	{"null body", []byte(` null`), []string{"got null"}},
	{"invalid object body", []byte(`[{"a" 1}]`), []string{"Expecting ':' delimiter"}},
	{"unknown escaped input", []byte(`{"in\u0074\/8": [1]}`), []string{`input "int/8" is not an input of this model`}},
	{"ragged length", []byte(`{"float32": [[1, 2], [3]]}`), []string{`input "float32": ragged nested list: lists at nesting level 2 have 2 and 1 elements (char 21)`}},
	{"ragged number after list", []byte(`{"float32": [[1], 2]}`), []string{`input "float32": ragged nested list: numbers at nesting levels 2 and 1 (char 18)`}},
	{"ragged list after number", []byte(`{"float32": [1, [2]]}`), []string{"ragged nested list: a list at nesting level 2 where numbers were at level 1"}},
	{"ragged empty list", []byte(`{"float32": [[1], []]}`), []string{"lists at nesting level 2 have 1 and 0 elements"}},
	{"ragged under empty list", []byte(`{"float32": [[], [[1]]]}`), []string{"a list at nesting level 3 where numbers were at level 2"}},
	{"too many levels", []byte(`{"float32": ` + strings.Repeat("[", 65) + "1" + strings.Repeat("]", 65) + "}"), []string{"nested list has more than 64 levels"}},
	{"fraction for int32", []byte(`{"int32": [1.5]}`), []string{`input "int32": 1.5 does not fit int32 (char 11)`}},
	{"300 for uint8", []byte(`{"uint8": [300]}`), []string{`input "uint8": 300 does not fit uint8`}},
	{"-1 for uint32", []byte(`{"uint32": [-1]}`), []string{"-1 does not fit uint32"}},
	{"2^31 for int32", []byte(`{"int32": [2147483648]}`), []string{"2147483648 does not fit int32"}},
	{"2^63 for int64", []byte(`{"int64": [9223372036854775808]}`), []string{"9223372036854775808 does not fit int64"}},
	{"2^64 for uint64", []byte(`{"uint64": [18446744073709551616]}`), []string{"18446744073709551616 does not fit uint64"}},
	{"float 2^64 for uint64", []byte(`{"uint64": [1.8446744073709552e19]}`), []string{"1.8446744073709552e19 does not fit uint64"}},
	{"null for int32", []byte(`{"int32": [null]}`), []string{"null does not fit int32"}},
	{"NaN for int64", []byte(`{"int64": [NaN]}`), []string{"NaN does not fit int64"}},
	{"Infinity for int8", []byte(`{"int8": -Infinity}`), []string{"-Infinity does not fit int8"}},
	{"bool for float32", []byte(`{"float32": [true]}`), []string{"true does not fit float32"}},
	{"2 for bool", []byte(`{"bool": [2]}`), []string{"2 does not fit bool"}},
	{"string value", []byte(`{"float32": "1"}`), []string{`input "float32": expected a list of numbers or a NumpyArrayField object (char 12)`}},
	{"bare null", []byte(`{"float32": null}`), []string{"expected a list of numbers or a NumpyArrayField object"}},
	{"string in list", []byte(`{"float32": [1, "2"]}`), []string{"Expecting value: line 1 column 17 (char 16)"}},
	{"field missing dtype", []byte(`{"int8": {"data_b64": "AQ==", "shape": [1]}}`), []string{`input "int8": NumpyArrayField needs "data_b64", "shape" and "dtype"; "dtype" is missing`}},
	{"field empty", []byte(`{"int8": {}}`), []string{`"data_b64" is missing`}},
	{"field bad base64", []byte(`{"int8": {"data_b64": "A*==", "shape": [1], "dtype": "int8"}}`), []string{"data_b64: illegal base64 data at input byte 1"}},
	{"field unpadded", []byte(`{"int8": {"data_b64": "AQ", "shape": [1], "dtype": "int8"}}`), []string{"data_b64 is not padded base64 (length 2)"}},
	{"field size mismatch", []byte(`{"float32": ` + arrayField(make([]byte, 20), "[2, 3]", "float32") + `}`),
		[]string{`input "float32": shape (2, 3) of float32 needs 24 bytes, data has 20`}},
	{"field shape overflow", []byte(`{"float32": {"data_b64": "", "shape": [4611686018427387904, 4], "dtype": "float32"}}`), []string{"of float32: invalid shape"}},
	{"field unsupported dtype", []byte(`{"float32": {"data_b64": "", "shape": [0], "dtype": "<U5"}}`), []string{`unsupported dtype "<U5"`}},
	{"field void2 for float16", []byte(`{"float16": {"data_b64": "AAA=", "shape": [1], "dtype": "<V2"}}`), []string{`dtype "<V2" (2-byte void) is accepted only for an input declared bfloat16`}},
	{"field negative dim", []byte(`{"int8": {"data_b64": "", "shape": [-1], "dtype": "int8"}}`), []string{"NumpyArrayField shape dimension -1 is out of range"}},
	{"field float dim", []byte(`{"int8": {"data_b64": "", "shape": [1.0], "dtype": "int8"}}`), []string{"NumpyArrayField shape must hold non-negative integers"}},
	{"field too many dims", []byte(`{"int8": {"data_b64": "", "shape": [` + strings.Repeat("1,", 64) + `0], "dtype": "int8"}}`), []string{"NumpyArrayField shape has more than 64 dimensions"}},
	{"field data not a string", []byte(`{"int8": {"data_b64": [1], "shape": [1], "dtype": "int8"}}`), []string{`NumpyArrayField "data_b64" must be a string`}},
	{"field bool byte 2", []byte(`{"bool": {"data_b64": "Ag==", "shape": [1], "dtype": "bool"}}`), []string{"bool element 0 is byte 0x02, want 0 or 1"}},
	{"field syntax", []byte(`{"int8": {"data_b64" "AQ=="}}`), []string{"Expecting ':' delimiter"}},
}

func TestDecodeTensorsJSONErrors(t *testing.T) {
	for _, tc := range jsonErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := DecodeTensors(tc.body, false, testInputs)
			if err == nil {
				t.Fatalf("DecodeTensors(%q) = %v, want an error", tc.body, got)
			}
			wantMalformed(t, err, tc.fragments...)
		})
	}
}

var encodeListCases = []struct {
	name    string
	outputs map[string]tensor.Tensor
	order   []string
	want    string
}{
	{"floats", map[string]tensor.Tensor{"y": tt(tensor.Float32, []int64{2, 2}, le([]float32{1, 2.5, float32(math.NaN()), float32(math.Inf(-1))}))},
		[]string{"y"}, `{"y": [[1.0, 2.5], [null, null]]}`},
	{"float32 shortest", map[string]tensor.Tensor{"y": tt(tensor.Float32, []int64{3}, le([]float32{0.1, 1e-5, 3.4028235e38}))},
		[]string{"y"}, `{"y": [0.1, 1e-05, 3.4028235e+38]}`},
	{"float64 repr", map[string]tensor.Tensor{"y": tt(tensor.Float64, []int64{3}, le([]float64{0.1, 1e16, math.Copysign(0, -1)}))},
		[]string{"y"}, `{"y": [0.1, 1e+16, -0.0]}`},
	{"float16 via float32", map[string]tensor.Tensor{"y": tt(tensor.Float16, []int64{3}, f16(0.1, 65504, math.Inf(1)))},
		[]string{"y"}, `{"y": [0.099975586, 65504.0, null]}`},
	{"bfloat16 via float32", map[string]tensor.Tensor{"y": tt(tensor.BFloat16, []int64{2}, le([]uint16{0x3f80, 0xbdcd}))},
		[]string{"y"}, `{"y": [1.0, -0.100097656]}`},
	{"ints", map[string]tensor.Tensor{
		"a": tt(tensor.Int8, []int64{2}, le([]int8{-128, 127})),
		"b": tt(tensor.Int16, []int64{1}, le([]int16{-32768})),
		"c": tt(tensor.Int32, []int64{1}, le([]int32{math.MinInt32})),
		"d": tt(tensor.Int64, []int64{2}, le([]int64{math.MinInt64, math.MaxInt64})),
		"e": tt(tensor.Uint8, []int64{1}, []byte{255}),
		"f": tt(tensor.Uint16, []int64{1}, le([]uint16{65535})),
		"g": tt(tensor.Uint32, []int64{1}, le([]uint32{math.MaxUint32})),
		"h": tt(tensor.Uint64, []int64{1}, le([]uint64{math.MaxUint64})),
	}, []string{"h", "g", "f", "e", "d", "c", "b", "a"},
		`{"h": [18446744073709551615], "g": [4294967295], "f": [65535], "e": [255], "d": [-9223372036854775808, 9223372036854775807], "c": [-2147483648], "b": [-32768], "a": [-128, 127]}`},
	{"bool", map[string]tensor.Tensor{"m": tt(tensor.Bool, []int64{1, 2}, []byte{1, 0})}, []string{"m"}, `{"m": [[true, false]]}`},
	{"0-d and zero-size", map[string]tensor.Tensor{
		"s": tt(tensor.Int32, []int64{}, le(int32(5))),
		"z": tt(tensor.Float32, []int64{2, 0}, nil),
		"e": tt(tensor.Float32, []int64{0, 2}, nil),
	}, []string{"s", "z", "e"}, `{"s": 5, "z": [[], []], "e": []}`},
	{"names escaped as json.dumps does", map[string]tensor.Tensor{"é\n\"\\\x7f😀\b\f\r\t\x01": tt(tensor.Uint8, []int64{}, []byte{1})},
		[]string{"é\n\"\\\x7f😀\b\f\r\t\x01"}, `{"\u00e9\n\"\\\u007f\ud83d\ude00\b\f\r\t\u0001": 1}`},
	{"no outputs", map[string]tensor.Tensor{}, nil, `{}`},
}

func TestEncodeTensorsJSONLists(t *testing.T) {
	for _, tc := range encodeListCases {
		got, err := EncodeTensors(tc.outputs, tc.order, FormatJSONLists)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: EncodeTensors = %s, %v, want %s", tc.name, got, err, tc.want)
		}
	}
}

func TestEncodeTensorsArrayField(t *testing.T) {
	outputs := map[string]tensor.Tensor{
		"y": tt(tensor.Int64, []int64{2, 2}, le([]int64{10, 11, 12, 13})),
		"b": tt(tensor.BFloat16, []int64{}, le(uint16(0x3f80))),
	}
	// The int64 example is the one in NumpyArrayField's docstring.
	const want = `{"y":{"data_b64":"CgAAAAAAAAALAAAAAAAAAAwAAAAAAAAADQAAAAAAAAA=","shape":[2,2],"dtype":"int64"},` +
		`"b":{"data_b64":"gD8=","shape":[],"dtype":"bfloat16"}}`
	got, err := EncodeTensors(outputs, []string{"y", "b"}, FormatJSONArrayField)
	if err != nil || string(got) != want {
		t.Errorf("EncodeTensors = %s, %v, want %s", got, err, want)
	}
}

// TestJSONRoundTrip decodes what EncodeTensors writes, for every dtype in
// both JSON forms.
func TestJSONRoundTrip(t *testing.T) {
	for _, d := range tensor.AllDTypes() {
		outputs := map[string]tensor.Tensor{d.String(): tt(d, []int64{3, 1, 2}, finiteSample(d, 6))}
		for _, f := range []Format{FormatJSONLists, FormatJSONArrayField} {
			if f == FormatJSONLists && (d == tensor.Complex64 || d == tensor.Complex128) {
				continue
			}
			body, err := EncodeTensors(outputs, []string{d.String()}, f)
			if err != nil {
				t.Fatalf("%v %v: EncodeTensors: %v", d, f, err)
			}
			got, gotF, err := DecodeTensors(body, false, testInputs)
			if err != nil || gotF != f || !cmp.Equal(got, outputs, treeOpts) {
				t.Errorf("%v %v: DecodeTensors(%s) = %v, %v, %v, want %v", d, f, body, got, gotF, err, outputs)
			}
		}
	}
}

// finiteSample is sampleData with every NaN and Inf replaced, so that JSON
// lists (which write them as null) round-trip bit for bit.
func finiteSample(d tensor.DType, n int) []byte {
	data := sampleData(d, n)
	part := d.Size()
	switch d {
	case tensor.Float16, tensor.BFloat16, tensor.Float32, tensor.Float64:
	case tensor.Complex64, tensor.Complex128:
		part /= 2
	default:
		return data
	}
	// In every little-endian float format here, bit 6 of the last byte is
	// the top exponent bit; clearing it rules out NaN and Inf.
	for p := part - 1; p < len(data); p += part {
		data[p] &^= 0x40
	}
	return data
}

func TestGoldenJSON(t *testing.T) {
	outputs := map[string]tensor.Tensor{}
	var order []string
	for _, d := range tensor.AllDTypes() {
		if d == tensor.Complex64 || d == tensor.Complex128 {
			continue
		}
		outputs[d.String()] = tt(d, []int64{2, 3}, finiteSample(d, 6))
		order = append(order, d.String())
	}
	for _, f := range []Format{FormatJSONLists, FormatJSONArrayField, FormatMsgpack} {
		got, err := EncodeTensors(outputs, order, f)
		if err != nil {
			t.Fatalf("EncodeTensors(%v): %v", f, err)
		}
		ext := map[Format]string{FormatMsgpack: ".msgpack"}[f]
		if ext == "" {
			ext = ".json"
		}
		checkGolden(t, filepath.Join("testdata", "golden", "predict-"+f.String()+ext), got)
	}
}

func TestHasControl(t *testing.T) {
	for n := range 20 {
		for pos := range n {
			for c := range 256 {
				b := bytes.Repeat([]byte{'a'}, n)
				b[pos] = byte(c)
				if n > 1 {
					b[(pos+1)%n] = 0xff // a high byte next to it must not matter
					if (pos+1)%n == pos {
						continue
					}
				}
				want := slices.ContainsFunc(b, func(x byte) bool { return x < 0x20 })
				if got := hasControl(b); got != want {
					t.Fatalf("hasControl(% x) = %v, want %v", b, got, want)
				}
			}
		}
	}
}
