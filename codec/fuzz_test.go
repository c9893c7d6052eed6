package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/modelserver/modelserver/tensor"
)

// Every decoder has a fuzz test seeded from its table cases. Each checks
// that the decoder never panics, that its errors wrap ErrMalformed, that
// what it returns is valid, and that encoding what it returned decodes to
// the same thing.

func seedGolden(f *testing.F, pattern string) {
	paths, err := filepath.Glob(filepath.Join("testdata", "golden", pattern))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzDecodeMsgpack(f *testing.F) {
	for _, cases := range [][]msgpackCase{msgpackValueCases, canonicalExtCases} {
		for _, c := range cases {
			f.Add(c.body)
		}
	}
	for _, c := range msgpackErrorCases {
		f.Add(c.body)
	}
	for _, c := range msgpackTensorsCases() {
		f.Add(c.body)
	}
	f.Add(wireF32Array)
	f.Add(wireInt32Scalar)
	seedGolden(f, "*.msgpack")
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := DecodeMsgpack(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %q does not wrap ErrMalformed", err)
			}
			return
		}
		checkTree(t, v, 0)
		// An independent decoder must agree that body is one whole value.
		r := bytes.NewReader(body)
		if err := msgpack.NewDecoder(r).Skip(); err != nil || r.Len() != 0 {
			t.Fatalf("accepted % x, but the library's decoder says %v with %d bytes left", body, err, r.Len())
		}
		enc, err := EncodeMsgpack(v)
		if err != nil {
			t.Fatalf("EncodeMsgpack(%#v): %v", v, err)
		}
		v2, err := DecodeMsgpack(enc)
		if err != nil || !cmp.Equal(v, v2, treeOpts) {
			t.Fatalf("round trip of %#v through % x = %#v, %v", v, enc, v2, err)
		}
		if enc2, _ := EncodeMsgpack(v2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: % x then % x", enc, enc2)
		}
	})
}

// checkTree validates every tensor in a decoded tree.
func checkTree(t *testing.T, v any, depth int) {
	t.Helper()
	if depth > MaxDepth+1 {
		t.Fatalf("tree deeper than %d", MaxDepth)
	}
	switch v := v.(type) {
	case []any:
		for _, x := range v {
			checkTree(t, x, depth+1)
		}
	case map[string]any:
		for _, x := range v {
			checkTree(t, x, depth+1)
		}
	case tensor.Tensor:
		checkTensor(t, "ndarray", v)
	case Scalar:
		checkTensor(t, "scalar", v.Tensor)
		if len(v.Shape) != 0 {
			t.Fatalf("scalar with shape %v", v.Shape)
		}
	case string:
		if !utf8.ValidString(v) {
			t.Fatalf("str %q is not UTF-8", v)
		}
	}
}

func checkTensor(t *testing.T, what string, v tensor.Tensor) {
	t.Helper()
	if err := v.Validate(); err != nil {
		t.Fatalf("%s does not validate: %v", what, err)
	}
	if !isAligned(v.Data, v.DType.Size()) {
		t.Fatalf("%s data is not aligned to %d", what, v.DType.Size())
	}
	if v.DType == tensor.Bool && checkBools(v.Data) != nil {
		t.Fatalf("%s has bool bytes other than 0 and 1", what)
	}
}

func FuzzDecodeTensorsMsgpack(f *testing.F) {
	for _, c := range msgpackTensorsCases() {
		f.Add(c.body)
	}
	for _, c := range msgpackTensorsErrorCases() {
		f.Add(c.body)
	}
	seedGolden(f, "predict-*.msgpack")
	f.Fuzz(func(t *testing.T, body []byte) {
		got, format, err := DecodeTensors(body, true, testInputs)
		// The in-place decoder must agree on every body, valid or not.
		inPlace, _, errInPlace := DecodeTensorsInPlace(bytes.Clone(body), true, testInputs)
		if (err == nil) != (errInPlace == nil) {
			t.Fatalf("DecodeTensors error %v, DecodeTensorsInPlace error %v", err, errInPlace)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %q does not wrap ErrMalformed", err)
			}
			return
		}
		for name, want := range got {
			if g := inPlace[name]; g.DType != want.DType || !bytes.Equal(g.Data, want.Data) || !slices.Equal(g.Shape, want.Shape) {
				t.Fatalf("input %q: in place %v, copied %v", name, g, want)
			}
		}
		checkRoundTrip(t, got, format, FormatMsgpack)
	})
}

func FuzzDecodeTensorsJSON(f *testing.F) {
	for _, c := range jsonListCases {
		f.Add([]byte(c.body))
	}
	for _, c := range jsonArrayFieldCases() {
		f.Add([]byte(c.body))
	}
	for _, c := range jsonErrorCases {
		f.Add(c.body)
	}
	seedGolden(f, "predict-*.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		got, format, err := DecodeTensors(body, false, testInputs)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %q does not wrap ErrMalformed", err)
			}
			return
		}
		if format == FormatMsgpack {
			t.Fatal("JSON body reported as msgpack")
		}
		checkRoundTrip(t, got, format, format)
	})
}

// checkRoundTrip validates decoded inputs, encodes them as outputs in
// format f and decodes them again.
func checkRoundTrip(t *testing.T, got map[string]tensor.Tensor, format, want Format) {
	t.Helper()
	if format != want {
		t.Fatalf("format = %v, want %v", format, want)
	}
	order := make([]string, 0, len(got))
	for name, v := range got {
		checkTensor(t, "input "+name, v)
		order = append(order, name)
		if format == FormatJSONLists {
			if v.DType == tensor.Complex64 || v.DType == tensor.Complex128 {
				return // JSON lists cannot carry complex numbers back
			}
			got[name] = nullNonFinite(v)
		}
	}
	enc, err := EncodeTensors(got, order, format)
	if err != nil {
		t.Fatalf("EncodeTensors(%v): %v", got, err)
	}
	back, format2, err := DecodeTensors(enc, format == FormatMsgpack, testInputs)
	if err != nil || format2 != format || !cmp.Equal(back, got, treeOpts) {
		t.Fatalf("round trip through %q = %v, %v, %v, want %v", enc, back, format2, err, got)
	}
}

// nullNonFinite replaces ±Inf and NaN by the NaN that a JSON null decodes
// to, since JSON lists write all three as null.
func nullNonFinite(v tensor.Tensor) tensor.Tensor {
	out := tensor.Tensor{DType: v.DType, Shape: v.Shape, Data: bytes.Clone(v.Data)}
	le := binary.LittleEndian
	for i := 0; i < len(out.Data); i += v.DType.Size() {
		e := out.Data[i:]
		switch v.DType {
		case tensor.Float16:
			if f := float16ToFloat32(le.Uint16(e)); math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				le.PutUint16(e, float64ToFloat16(pyNaN))
			}
		case tensor.BFloat16:
			if f := bfloat16ToFloat32(le.Uint16(e)); math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				le.PutUint16(e, float64ToBFloat16(pyNaN))
			}
		case tensor.Float32:
			if f := float64(math.Float32frombits(le.Uint32(e))); math.IsNaN(f) || math.IsInf(f, 0) {
				le.PutUint32(e, math.Float32bits(float32(pyNaN)))
			}
		case tensor.Float64:
			if f := math.Float64frombits(le.Uint64(e)); math.IsNaN(f) || math.IsInf(f, 0) {
				le.PutUint64(e, math.Float64bits(pyNaN))
			}
		}
	}
	return out
}

func FuzzPyComplex(f *testing.F) {
	for _, c := range pyComplexCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parsePyComplex(s)
		if err != nil {
			return
		}
		repr := formatPyComplex(c)
		c2, err := parsePyComplex(repr)
		if err != nil || formatPyComplex(c2) != repr {
			t.Fatalf("complex(%q) has repr %q, which parses to %v (%v)", s, repr, c2, err)
		}
	})
}

func FuzzDecimal(f *testing.F) {
	for _, s := range []string{"1.50", "-0", "1e3", "0.0000001", "NaN12", "-sNaN", "Infinity", "  7 ", "12345e-12"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := canonicalDecimal(s)
		if err != nil {
			return
		}
		if d2, err := canonicalDecimal(string(d)); err != nil || d2 != d {
			t.Fatalf("str(Decimal(%q)) = %q is not canonical: %q, %v", s, d, d2, err)
		}
	})
}

func FuzzISOTimes(f *testing.F) {
	for _, s := range []string{"2024-02-29T23:59:58.123456", "2024-01-02T03:04:05Z", "2024-01-02 03:04:05.5-01:00:01", "2024-01-02",
		"03:04", "23:59:59.999999", "0001-01-01T00:00:00+05:30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := parseISODateTime(s); err == nil {
			text, err := formatISODateTime(v)
			if err != nil {
				t.Fatalf("formatISODateTime(parseISODateTime(%q) = %v): %v", s, v, err)
			}
			v2, err := parseISODateTime(text)
			if err != nil || !cmp.Equal(v, v2, treeOpts) {
				t.Fatalf("datetime %q -> %q -> %v, %v; want %v", s, text, v2, err, v)
			}
		}
		if d, err := parseISODate(s); err == nil {
			if d2, err := parseISODate(d.String()); err != nil || d2 != d {
				t.Fatalf("date %q -> %q -> %v, %v", s, d, d2, err)
			}
		}
		if tod, err := parseISOTime(s); err == nil {
			if tod2, err := parseISOTime(tod.String()); err != nil || tod2 != tod {
				t.Fatalf("time %q -> %q -> %v, %v", s, tod, tod2, err)
			}
		}
	})
}

func FuzzAppendPyFloat(f *testing.F) {
	for _, c := range appendPyFloatCases {
		f.Add(math.Float64bits(c.f))
	}
	f.Fuzz(func(t *testing.T, bits uint64) {
		for _, size := range []int{32, 64} {
			v := math.Float64frombits(bits)
			if size == 32 {
				v = float64(math.Float32frombits(uint32(bits)))
			}
			s := string(appendPyFloat(nil, v, size, true))
			back, err := strconv.ParseFloat(s, size)
			if err != nil && !math.IsInf(v, 0) || back != v && !(math.IsNaN(v) && math.IsNaN(back)) {
				t.Fatalf("appendPyFloat(%v, %d) = %q, which parses to %v, %v", v, size, s, back, err)
			}
		}
	})
}
