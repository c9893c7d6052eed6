package codec

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/modelserver/modelserver/tensor"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// The worked examples of truss-wire.md §3.2, byte for byte.
var (
	wireF32Array = unhex(`85
		c4026e64 c3
		c40474797065 a33c6634
		c4046b696e64 c400
		c40573686170 65 9102
		c40464617461 c408 0000803f 00000040`)
	wireInt32Scalar = unhex(`83 c4026e64c2 c40474797065a33c6934 c40464617461c40405000000`)
)

func TestWireExamples(t *testing.T) {
	f32 := tt(tensor.Float32, []int64{2}, le(float32(1), float32(2)))
	i32 := Scalar{tt(tensor.Int32, []int64{}, le(int32(5)))}
	for _, tc := range []struct {
		name string
		v    any
		wire []byte
	}{
		{"np.array([1.0, 2.0], float32)", f32, wireF32Array},
		{"np.int32(5)", i32, wireInt32Scalar},
	} {
		got, err := EncodeMsgpack(tc.v)
		if err != nil || !bytes.Equal(got, tc.wire) {
			t.Errorf("EncodeMsgpack(%s) = % x, %v, want % x", tc.name, got, err, tc.wire)
		}
		back, err := DecodeMsgpack(tc.wire)
		if err != nil || !cmp.Equal(back, tc.v, treeOpts) {
			t.Errorf("DecodeMsgpack(%s) = %#v, %v, want %#v", tc.name, back, err, tc.v)
		}
	}
}

type msgpackCase struct {
	name string
	body []byte
	want any
}

// msgpackValueCases cover every msgpack format byte the decoder accepts.
var msgpackValueCases = []msgpackCase{
	{"nil", unhex("c0"), nil},
	{"false", unhex("c2"), false},
	{"true", unhex("c3"), true},
	{"positive fixint", unhex("7f"), int64(127)},
	{"negative fixint", unhex("e0"), int64(-32)},
	{"uint8", unhex("ccff"), int64(255)},
	{"uint16", unhex("cd0100"), int64(256)},
	{"uint32", unhex("ce00010000"), int64(65536)},
	{"uint64 small", unhex("cf0000000100000000"), int64(1 << 32)},
	{"uint64 MaxInt64", unhex("cf7fffffffffffffff"), int64(math.MaxInt64)},
	{"uint64 2^63", unhex("cf8000000000000000"), uint64(1 << 63)},
	{"uint64 max", unhex("cfffffffffffffffff"), uint64(math.MaxUint64)},
	{"int8", unhex("d080"), int64(-128)},
	{"int16", unhex("d18000"), int64(-32768)},
	{"int32", unhex("d280000000"), int64(math.MinInt32)},
	{"int64", unhex("d38000000000000000"), int64(math.MinInt64)},
	{"int8 positive", unhex("d001"), int64(1)},
	{"float32", unhex("ca3fc00000"), float32(1.5)},
	{"float64", unhex("cbc004000000000000"), -2.5},
	{"float64 NaN payload", unhex("cb7ff8000000000001"), math.Float64frombits(0x7ff8000000000001)},
	{"fixstr", unhex("a3616263"), "abc"},
	{"fixstr empty", unhex("a0"), ""},
	{"str8", append(unhex("d920"), strings.Repeat("x", 32)...), strings.Repeat("x", 32)},
	{"str16", unhex("da0002c3a9"), "é"},
	{"str32", unhex("db00000001 7a"), "z"},
	{"bin8", unhex("c403010203"), []byte{1, 2, 3}},
	{"bin8 empty", unhex("c400"), []byte{}},
	{"bin16", unhex("c5000109"), []byte{9}},
	{"bin32", unhex("c600000001 09"), []byte{9}},
	{"fixarray", unhex("9201c0"), []any{int64(1), nil}},
	{"array empty", unhex("90"), []any{}},
	{"array16", unhex("dc000101"), []any{int64(1)}},
	{"array32", unhex("dd0000000101"), []any{int64(1)}},
	{"fixmap", unhex("81a16101"), map[string]any{"a": int64(1)}},
	{"map empty", unhex("80"), map[string]any{}},
	{"map16", unhex("de0001a16101"), map[string]any{"a": int64(1)}},
	{"map32", unhex("df00000001a16101"), map[string]any{"a": int64(1)}},
	{"bin key", unhex("81c4016101"), map[string]any{"a": int64(1)}},
	{"duplicate key: last wins", unhex("82a16101a16102"), map[string]any{"a": int64(2)}},
	{"nested", unhex("81a178 92 90 81a179c3"), map[string]any{"x": []any{[]any{}, map[string]any{"y": true}}}},
}

func TestDecodeMsgpackValues(t *testing.T) {
	for _, tc := range msgpackValueCases {
		got, err := DecodeMsgpack(tc.body)
		if err != nil || !cmp.Equal(got, tc.want, treeOpts) {
			t.Errorf("%s: DecodeMsgpack(% x) = %#v, %v, want %#v", tc.name, tc.body, got, err, tc.want)
		}
	}
}

// marked builds a Truss extension map as Python writes it.
func marked(marker string, data func(e *msgpack.Encoder) error) []byte {
	return mp(func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeMapLen(2), e.EncodeBytes([]byte(marker)), e.EncodeBool(true),
			e.EncodeBytes([]byte("data")), data(e))
	})
}

func str(s string) func(e *msgpack.Encoder) error {
	return func(e *msgpack.Encoder) error { return e.EncodeString(s) }
}

func ints(v ...int64) func(e *msgpack.Encoder) error {
	return func(e *msgpack.Encoder) error {
		err := e.EncodeArrayLen(len(v))
		for _, x := range v {
			err = errors.Join(err, e.EncodeInt(x))
		}
		return err
	}
}

var (
	plus0530 = time.FixedZone("", 5*3600+30*60)
	minus1   = time.FixedZone("", -3600-1)
)

// canonicalExtCases are Truss extension values in the exact form Truss's
// encoder writes them: they decode to want and encode back to body.
var canonicalExtCases = []msgpackCase{
	{"datetime naive", marked("__dt_datetime_iso__", str("2024-02-29T23:59:58.123456")),
		time.Date(2024, 2, 29, 23, 59, 58, 123456000, NaiveLocation)},
	{"datetime naive whole", marked("__dt_datetime_iso__", str("0001-01-01T00:00:00")),
		time.Date(1, 1, 1, 0, 0, 0, 0, NaiveLocation)},
	{"datetime UTC", marked("__dt_datetime_iso__", str("2024-01-02T03:04:05Z")),
		time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
	{"datetime offset", marked("__dt_datetime_iso__", str("2024-01-02T03:04:05.000007+05:30")),
		time.Date(2024, 1, 2, 3, 4, 5, 7000, plus0530)},
	{"datetime offset seconds", marked("__dt_datetime_iso__", str("9999-12-31T23:59:59-01:00:01")),
		time.Date(9999, 12, 31, 23, 59, 59, 0, minus1)},
	{"date", marked("__dt_date_iso__", str("2024-02-29")), Date{2024, time.February, 29}},
	{"time", marked("__dt_time_iso__", str("07:08:09.000010")), TimeOfDay{7, 8, 9, 10}},
	{"time whole", marked("__dt_time_iso__", str("23:00:00")), TimeOfDay{23, 0, 0, 0}},
	{"timedelta", marked("__dt_timedelta__", ints(-4, 86399, 5)), Timedelta{-4, 86399, 5}},
	{"decimal", marked("__decimal__", str("1.50")), Decimal("1.50")},
	{"decimal exponent", marked("__decimal__", str("-1E+3")), Decimal("-1E+3")},
	{"decimal NaN", marked("__decimal__", str("NaN123")), Decimal("NaN123")},
	{"uuid", marked("__uuid__", str("12345678-1234-5678-1234-567812345678")),
		uuid.MustParse("12345678-1234-5678-1234-567812345678")},
	{"complex", mp(func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeMapLen(2), e.EncodeBytes([]byte("complex")), e.EncodeBool(true),
			e.EncodeBytes([]byte("data")), e.EncodeString("(1.5-2j)"))
	}), Complex(complex(1.5, -2))},
}

func TestMsgpackExtTypesCanonical(t *testing.T) {
	for _, tc := range canonicalExtCases {
		got, err := DecodeMsgpack(tc.body)
		if err != nil || !cmp.Equal(got, tc.want, treeOpts) {
			t.Errorf("%s: DecodeMsgpack = %#v, %v, want %#v", tc.name, got, err, tc.want)
			continue
		}
		enc, err := EncodeMsgpack(got)
		if err != nil || !bytes.Equal(enc, tc.body) {
			t.Errorf("%s: EncodeMsgpack(decoded) = % x, %v, want the input % x", tc.name, enc, err, tc.body)
		}
	}
}

// Inputs that Python accepts in other spellings decode to the value that
// Python's re-encoding would carry.
func TestMsgpackExtTypesLenient(t *testing.T) {
	for _, tc := range []struct {
		name, marker, data, want string
	}{
		{"datetime +00:00 becomes Z", "__dt_datetime_iso__", "2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05Z"},
		{"datetime -00:00 becomes Z", "__dt_datetime_iso__", "2024-01-02T03:04:05-00:00", "2024-01-02T03:04:05Z"},
		{"datetime space, ms", "__dt_datetime_iso__", "2024-01-02 03:04:05.123", "2024-01-02T03:04:05.123000"},
		{"datetime date only", "__dt_datetime_iso__", "2024-01-02", "2024-01-02T00:00:00"},
		{"datetime hour only", "__dt_datetime_iso__", "2024-01-02T03", "2024-01-02T03:00:00"},
		{"datetime long fraction truncated", "__dt_datetime_iso__", "2024-01-02T03:04:05.1234569", "2024-01-02T03:04:05.123456"},
		{"time minutes", "__dt_time_iso__", "03:04", "03:04:00"},
		{"decimal trims", "__decimal__", " 007.50 ", "7.50"},
		{"decimal exponent", "__decimal__", "1e3", "1E+3"},
		{"decimal small", "__decimal__", "0.0000001", "1E-7"},
		{"decimal neg zero", "__decimal__", "-0.00", "-0.00"},
		{"decimal inf", "__decimal__", "-inf", "-Infinity"},
		{"decimal snan", "__decimal__", "snan007", "sNaN7"},
		{"uuid braces upper", "__uuid__", "{12345678-1234-5678-1234-56781234567A}", "12345678-1234-5678-1234-56781234567a"},
		{"uuid urn hex", "__uuid__", "urn:uuid:123456781234567812345678123456ab", "12345678-1234-5678-1234-5678123456ab"},
	} {
		got, err := DecodeMsgpack(marked(tc.marker, str(tc.data)))
		if err != nil {
			t.Errorf("%s: DecodeMsgpack: %v", tc.name, err)
			continue
		}
		enc, err := EncodeMsgpack(got)
		want := marked(tc.marker, str(tc.want))
		if err != nil || !bytes.Equal(enc, want) {
			t.Errorf("%s: re-encoded % x, %v, want % x", tc.name, enc, err, want)
		}
	}
}

func TestEncodeMsgpackNormalizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want []byte
	}{
		{"timedelta", Timedelta{Days: 0, Seconds: -1, Microseconds: 1500000}, marked("__dt_timedelta__", ints(0, 0, 500000))},
		{"decimal", Decimal("+12.30e-1"), marked("__decimal__", str("1.230"))},
		{"datetime ns dropped", time.Date(2024, 1, 2, 3, 4, 5, 999, time.UTC), marked("__dt_datetime_iso__", str("2024-01-02T03:04:05Z"))},
		{"datetime zero offset zone", time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 0)), marked("__dt_datetime_iso__", str("2024-01-02T03:04:05Z"))},
		{"int", 300, unhex("cd012c")},
		{"nil bytes", []byte(nil), unhex("c400")},
		{"map keys sorted", map[string]any{"b": 1, "a": 2}, unhex("82 a161 02 a162 01")},
		{"float32 kept", float32(1.5), unhex("ca3fc00000")},
		{"non-UTF-8 key as bin", map[string]any{"\xff": 1}, unhex("81 c401ff 01")},
		{"negative int", int64(-33), unhex("d0df")},
		{"uint64", uint64(math.MaxUint64), unhex("cfffffffffffffffff")},
		{"str8", strings.Repeat("y", 40), append(unhex("d928"), strings.Repeat("y", 40)...)},
	} {
		got, err := EncodeMsgpack(tc.v)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: EncodeMsgpack = % x, %v, want % x", tc.name, got, err, tc.want)
		}
	}
}

func TestEncodeMsgpackErrors(t *testing.T) {
	deep := []any{nil}
	for range MaxDepth + 1 {
		deep = []any{deep}
	}
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"unsupported type", struct{}{}, "cannot encode struct {} as msgpack"},
		{"non-UTF-8 string", []any{"\xff"}, `string "\xff" is not valid UTF-8`},
		{"bad map value", map[string]any{"a": []any{struct{}{}}}, "cannot encode struct {}"},
		{"invalid scalar", Scalar{tensor.Tensor{DType: tensor.Int8, Data: []byte{}}}, "numpy scalar: data has 0 bytes"},
		{"invalid tensor", tensor.Tensor{DType: tensor.Float32, Shape: []int64{2}, Data: []byte{1}}, "ndarray: data has 1 bytes"},
		{"scalar not 0-d", Scalar{tt(tensor.Int8, []int64{1}, []byte{1})}, "numpy scalar has shape (1,), want ()"},
		{"year 0", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), "year 0 is outside"},
		{"bad date", Date{2023, 2, 29}, "date 2023-02-29 is out of range"},
		{"bad time", TimeOfDay{Hour: 24}, "out of range"},
		{"bad decimal", Decimal("1.2.3"), `invalid decimal literal "1.2.3"`},
		{"timedelta overflow", Timedelta{Days: 999999999, Seconds: 86400}, "timedelta out of range"},
		{"too deep", deep, "nested deeper than 1024"},
	} {
		_, err := EncodeMsgpack(tc.v)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrMalformed) {
			t.Errorf("%s: EncodeMsgpack error = %v, want one containing %q and not ErrMalformed", tc.name, err, tc.want)
		}
	}
}

// sampleData returns the bytes of n elements of d that exercise its range.
func sampleData(d tensor.DType, n int) []byte {
	out := make([]byte, n*d.Size())
	for i := range out {
		out[i] = byte(i*37 + 11)
	}
	if d == tensor.Bool {
		for i := range out {
			out[i] &= 1
		}
	}
	return out
}

func swapped(d tensor.DType, data []byte) []byte {
	out := bytes.Clone(data)
	tensor.SwapBytes(d, out)
	return out
}

func TestMsgpackNDArrayEveryDType(t *testing.T) {
	for _, d := range tensor.AllDTypes() {
		want := tt(d, []int64{2, 3}, sampleData(d, 6))
		enc, err := EncodeMsgpack(want)
		if err != nil {
			t.Fatalf("%v: EncodeMsgpack: %v", d, err)
		}
		wire := mp(func(e *msgpack.Encoder) error { return ndarrayMap(e, true, wireTypestr(d), []int64{2, 3}, want.Data) })
		if !bytes.Equal(enc, wire) {
			t.Errorf("%v: EncodeMsgpack = % x, want % x", d, enc, wire)
		}
		bodies := map[string][]byte{"bin keys": wire,
			"str keys": mp(func(e *msgpack.Encoder) error { return ndarrayMap(e, false, wireTypestr(d), []int64{2, 3}, want.Data) })}
		if d.Size() > 1 && d != tensor.BFloat16 {
			bodies["big-endian"] = mp(func(e *msgpack.Encoder) error {
				return ndarrayMap(e, true, ">"+d.Typestr()[1:], []int64{2, 3}, swapped(d, want.Data))
			})
		}
		bodies["numpy name"] = mp(func(e *msgpack.Encoder) error { return ndarrayMap(e, true, d.String(), []int64{2, 3}, want.Data) })
		for name, body := range bodies {
			got, err := DecodeMsgpack(body)
			if err != nil || !cmp.Equal(got, want, treeOpts) {
				t.Errorf("%v %s: DecodeMsgpack = %v, %v, want %v", d, name, got, err, want)
			}
		}
		scalar := Scalar{tt(d, []int64{}, sampleData(d, 1))}
		enc, err = EncodeMsgpack(scalar)
		if err != nil {
			t.Fatalf("%v: EncodeMsgpack(scalar): %v", d, err)
		}
		if got, err := DecodeMsgpack(enc); err != nil || !cmp.Equal(got, scalar, treeOpts) {
			t.Errorf("%v: scalar round trip = %v, %v, want %v", d, got, err, scalar)
		}
	}
}

func TestDecodeMsgpackNDArrayShapes(t *testing.T) {
	f32 := func(shape []int64, data []byte) []byte {
		return mp(func(e *msgpack.Encoder) error { return ndarrayMap(e, true, "<f4", shape, data) })
	}
	noKind := mp(func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeMapLen(4), e.EncodeBytes([]byte("nd")), e.EncodeBool(true),
			e.EncodeBytes([]byte("type")), e.EncodeString("<i2"), e.EncodeBytes([]byte("shape")), e.EncodeInt(2),
			e.EncodeBytes([]byte("data")), e.EncodeBytes(le(int16(-1), int16(2))))
	})
	for _, tc := range []msgpackCase{
		{"0-d", f32([]int64{}, le(float32(3))), tt(tensor.Float32, []int64{}, le(float32(3)))},
		{"zero-size", f32([]int64{0, 3}, nil), tt(tensor.Float32, []int64{0, 3}, []byte{})},
		{"zero-size with huge dims", f32([]int64{0, math.MaxInt64}, nil), tt(tensor.Float32, []int64{0, math.MaxInt64}, []byte{})},
		{"no kind, int shape", noKind, tt(tensor.Int16, []int64{2}, le(int16(-1), int16(2)))},
	} {
		got, err := DecodeMsgpack(tc.body)
		if err != nil || !cmp.Equal(got, tc.want, treeOpts) {
			t.Errorf("%s: DecodeMsgpack = %v, %v, want %v", tc.name, got, err, tc.want)
		}
	}
}

// Markers are tested in Truss's order, then msgpack_numpy's; maps that
// carry a marker but lack what Python's decoder reads stay maps, as
// Python's KeyError fallback leaves them.
func TestDecodeMsgpackMarkers(t *testing.T) {
	entries := func(kv ...func(e *msgpack.Encoder) error) []byte {
		return mp(func(e *msgpack.Encoder) error {
			err := e.EncodeMapLen(len(kv) / 2)
			for _, w := range kv {
				err = errors.Join(err, w(e))
			}
			return err
		})
	}
	key := func(k string) func(e *msgpack.Encoder) error { return bin([]byte(k)) }
	yes := func(e *msgpack.Encoder) error { return e.EncodeBool(true) }
	no := func(e *msgpack.Encoder) error { return e.EncodeBool(false) }
	for _, tc := range []msgpackCase{
		{"date before uuid", entries(key("__uuid__"), yes, key("__dt_date_iso__"), yes, key("data"), str("2024-01-01")),
			Date{2024, 1, 1}},
		{"Truss before numpy", entries(key("nd"), no, key("type"), str("<i4"), key("__decimal__"), yes, key("data"), str("1.5")),
			Decimal("1.5")},
		{"nd before complex", entries(key("complex"), yes, key("nd"), no, key("type"), str("|i1"), key("data"), bin([]byte{7})),
			Scalar{tt(tensor.Int8, []int64{}, []byte{7})}},
		{"nd without data", entries(key("nd"), yes, key("type"), str("<f4")),
			map[string]any{"nd": true, "type": "<f4"}},
		{"scalar without type", entries(key("nd"), no, key("data"), bin([]byte{1})),
			map[string]any{"nd": false, "data": []byte{1}}},
		{"datetime without data", entries(key("__dt_datetime_iso__"), yes, key("complex"), yes),
			map[string]any{"__dt_datetime_iso__": true, "complex": true}},
		{"complex without data", entries(key("complex"), yes), map[string]any{"complex": true}},
	} {
		got, err := DecodeMsgpack(tc.body)
		if err != nil || !cmp.Equal(got, tc.want, treeOpts) {
			t.Errorf("%s: DecodeMsgpack = %#v, %v, want %#v", tc.name, got, err, tc.want)
		}
	}
}

type errorCase struct {
	name      string
	body      []byte
	fragments []string
}

func ndarrayBody(kind string, typ func(e *msgpack.Encoder) error, shape, data func(e *msgpack.Encoder) error) []byte {
	return mp(func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeMapLen(5), e.EncodeBytes([]byte("nd")), e.EncodeBool(true),
			e.EncodeBytes([]byte("type")), typ(e), e.EncodeBytes([]byte("kind")), e.EncodeBytes([]byte(kind)),
			e.EncodeBytes([]byte("shape")), shape(e), e.EncodeBytes([]byte("data")), data(e))
	})
}

func bin(b []byte) func(e *msgpack.Encoder) error {
	return func(e *msgpack.Encoder) error { return e.EncodeBytes(append([]byte{}, b...)) }
}

var msgpackErrorCases = []errorCase{
	{"empty", nil, []string{"Invalid msgpack payload: unexpected end of data at byte 0"}},
	{"trailing bytes", unhex("c0c0"), []string{"Invalid msgpack payload: 1 extra bytes after the value at byte 1"}},
	{"reserved c1", unhex("c1"), []string{"reserved type byte 0xc1 at byte 0"}},
	{"fixext", unhex("d40100"), []string{"ext types are not supported (type byte 0xd4) at byte 0"}},
	{"ext8", unhex("c7010100"), []string{"ext types are not supported (type byte 0xc7)"}},
	{"truncated uint16", unhex("cd01"), []string{"unexpected end of data at byte 2"}},
	{"truncated float64", unhex("cb00"), []string{"unexpected end of data at byte 2"}},
	{"str past end", unhex("a561"), []string{"str of 5 bytes exceeds the 1 bytes left at byte 0"}},
	{"bin32 huge", unhex("c6ffffffff"), []string{"bin of 4294967295 bytes exceeds the 0 bytes left at byte 0"}},
	{"array32 huge", unhex("dd7fffffff01"), []string{"array of 2147483647 elements exceeds the 1 bytes left"}},
	{"map32 huge", unhex("df0000000301010101"), []string{"map of 3 entries exceeds the 4 bytes left"}},
	{"truncated array", unhex("9301"), []string{"array of 3 elements exceeds the 1 bytes left"}},
	{"invalid UTF-8 str", unhex("a1ff"), []string{"str is not valid UTF-8 at byte 0"}},
	{"int key", unhex("810101"), []string{"map key must be str or bin, got int at byte 1"}},
	{"array key", unhex("819001"), []string{"map key must be str or bin, got array at byte 1"}},
	{"too deep", append(bytes.Repeat([]byte{0x91}, MaxDepth+1), 0xc0), []string{"nesting deeper than 1024 at byte 1024"}},
	{"size mismatch", ndarrayBody("", str("<f4"), ints(2, 3), bin(make([]byte, 20))),
		[]string{"Invalid msgpack payload: value at byte 0: shape (2, 3) of float32 needs 24 bytes, data has 20"}},
	{"size overflow", ndarrayBody("", str("<f4"), ints(1<<62, 1<<62), bin(nil)),
		[]string{"shape (4611686018427387904, 4611686018427387904) of float32: invalid shape"}},
	{"unsupported dtype", ndarrayBody("", str("<U5"), ints(1), bin(make([]byte, 20))), []string{`unsupported dtype "<U5"`}},
	{"datetime64", ndarrayBody("", str("<M8[ns]"), ints(1), bin(make([]byte, 8))), []string{`unsupported dtype "<M8[ns]"`}},
	{"object array", ndarrayBody("O", func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeArrayLen(1), e.EncodeArrayLen(2), e.EncodeString(""), e.EncodeString("|O"))
	}, ints(1), bin([]byte("pickle"))), []string{"object arrays (kind 'O', pickled Python objects) are not supported"}},
	{"structured array", ndarrayBody("V", func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeArrayLen(2), e.EncodeArrayLen(2), e.EncodeString("a"), e.EncodeString("<f4"),
			e.EncodeArrayLen(2), e.EncodeString("b"), e.EncodeString("<i4"))
	}, ints(1), bin(make([]byte, 8))), []string{"structured arrays (kind 'V') are not supported"}},
	{"void2 outside a bfloat16 input", ndarrayBody("", str("<V2"), ints(1), bin(make([]byte, 2))),
		[]string{`dtype "<V2" (2-byte void) is accepted only for an input declared bfloat16`}},
	{"negative dim", ndarrayBody("", str("<f4"), ints(-1), bin(nil)), []string{"ndarray shape must hold non-negative ints, got -1"}},
	{"shape not ints", ndarrayBody("", str("<f4"), str("2"), bin(nil)), []string{"ndarray shape must be an array of ints, got str"}},
	{"data not bin", ndarrayBody("", str("<f4"), ints(1), str("abcd")), []string{"ndarray data must be bin, got str"}},
	{"type not str", ndarrayBody("", func(e *msgpack.Encoder) error { return e.EncodeInt(4) }, ints(1), bin(make([]byte, 4))),
		[]string{"ndarray type must be a str, got int"}},
	{"bool byte 2", ndarrayBody("", str("|b1"), ints(2), bin([]byte{1, 2})), []string{"bool element 1 is byte 0x02, want 0 or 1"}},
	{"scalar size", mp(func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeMapLen(3), e.EncodeBytes([]byte("nd")), e.EncodeBool(false),
			e.EncodeBytes([]byte("type")), e.EncodeString("<i4"), e.EncodeBytes([]byte("data")), e.EncodeBytes([]byte{1, 2, 3}))
	}), []string{"numpy scalar of int32 needs 4 bytes, data has 3"}},
	{"complex syntax", mp(func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeMapLen(2), e.EncodeBytes([]byte("complex")), e.EncodeBool(true),
			e.EncodeBytes([]byte("data")), e.EncodeString("(1+2)"))
	}), []string{`invalid complex literal "(1+2)"`}},
	{"datetime syntax", marked("__dt_datetime_iso__", str("2024-01-02X03:04")), []string{`invalid isoformat datetime "2024-01-02X03:04"`}},
	{"datetime not str", marked("__dt_datetime_iso__", ints(1)), []string{"datetime data must be a str, got array"}},
	{"datetime offset fraction", marked("__dt_datetime_iso__", str("2024-01-02T03:04+01:00:00.5")), []string{"has a fraction of a second"}},
	{"date invalid day", marked("__dt_date_iso__", str("2023-02-29")), []string{"date 2023-02-29 is out of range"}},
	{"time with offset", marked("__dt_time_iso__", str("03:04:05+01:00")), []string{`invalid isoformat time "03:04:05+01:00"`}},
	{"time 24h", marked("__dt_time_iso__", str("24:00:00")), []string{"time 24:00:00.000000 is out of range"}},
	{"timedelta shape", marked("__dt_timedelta__", ints(1, 2)), []string{"timedelta data must be [days, seconds, microseconds], got array"}},
	{"timedelta float", marked("__dt_timedelta__", func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeArrayLen(3), e.EncodeFloat64(1), e.EncodeInt(0), e.EncodeInt(0))
	}), []string{"timedelta data must hold ints, got float"}},
	{"timedelta range", marked("__dt_timedelta__", ints(1e9, 0, 0)), []string{"timedelta out of range"}},
	{"decimal syntax", marked("__decimal__", str("1.2.3")), []string{`invalid decimal literal "1.2.3"`}},
	{"date not str", marked("__dt_date_iso__", ints()), []string{"date data must be a str, got array"}},
	{"time not str", marked("__dt_time_iso__", bin(nil)), []string{"time data must be a str, got bin"}},
	{"decimal not str", marked("__decimal__", ints()), []string{"decimal data must be a str, got array"}},
	{"uuid not str", marked("__uuid__", bin([]byte("x"))), []string{"UUID data must be a str, got bin"}},
	{"timedelta uint64", marked("__dt_timedelta__", func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeArrayLen(3), e.EncodeUint(math.MaxUint64), e.EncodeInt(0), e.EncodeInt(0))
	}), []string{"timedelta out of range"}},
	{"complex data int", mp(func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeMapLen(2), e.EncodeBytes([]byte("complex")), e.EncodeBool(true),
			e.EncodeBytes([]byte("data")), e.EncodeInt(1))
	}), []string{"complex data must be a str, got int"}},
	{"scalar data not bin", mp(func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeMapLen(3), e.EncodeBytes([]byte("nd")), e.EncodeBool(false),
			e.EncodeBytes([]byte("type")), e.EncodeString("<i4"), e.EncodeBytes([]byte("data")), e.EncodeFloat64(1))
	}), []string{"numpy scalar data must be bin, got float"}},
	{"scalar unsupported dtype", mp(func(e *msgpack.Encoder) error {
		return errors.Join(e.EncodeMapLen(3), e.EncodeBytes([]byte("nd")), e.EncodeBool(false),
			e.EncodeBytes([]byte("type")), e.EncodeString("<U1"), e.EncodeBytes([]byte("data")), e.EncodeBytes(make([]byte, 4)))
	}), []string{`unsupported dtype "<U1"`}},
	{"truncated key", unhex("82a16101d9"), []string{"unexpected end of data at byte 5"}},
	{"bin32 length truncated", unhex("c60000"), []string{"unexpected end of data at byte 3"}},
	{"uuid syntax", marked("__uuid__", str("1234")), []string{`invalid UUID "1234"`}},
	{"error inside a tree names the value's offset", append(unhex("9201"), marked("__uuid__", str("x"))...),
		[]string{`Invalid msgpack payload: value at byte 2: invalid UUID "x"`}},
}

func TestDecodeMsgpackErrors(t *testing.T) {
	for _, tc := range msgpackErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := DecodeMsgpack(tc.body)
			if err == nil {
				t.Fatalf("DecodeMsgpack(% x) = %#v, want an error", tc.body, v)
			}
			wantMalformed(t, err, tc.fragments...)
		})
	}
}

// TestZeroCopy moves an ndarray's data through every alignment: the
// decoded tensor aliases the body exactly when its data is aligned, and is
// otherwise an aligned copy.
func TestZeroCopy(t *testing.T) {
	for _, d := range []tensor.DType{tensor.Float32, tensor.Float64, tensor.Int16, tensor.Complex128, tensor.Uint8} {
		data := sampleData(d, 4)
		for pad := range 16 {
			wire := mp(func(e *msgpack.Encoder) error {
				return errors.Join(e.EncodeArrayLen(2), e.EncodeString(strings.Repeat("p", pad)),
					ndarrayMap(e, true, wireTypestr(d), []int64{4}, data))
			})
			body := copyAligned(wire, 64)
			v, err := DecodeMsgpack(body)
			if err != nil {
				t.Fatalf("%v pad %d: %v", d, pad, err)
			}
			got := v.([]any)[1].(tensor.Tensor)
			off := bytes.Index(body, data)
			aligned := off%d.Size() == 0
			if aliases(got.Data, body) != aligned || !isAligned(got.Data, d.Size()) || !bytes.Equal(got.Data, data) {
				t.Errorf("%v with data at offset %d: aliases body = %v, aligned = %v, want aliasing = %v",
					d, off, aliases(got.Data, body), isAligned(got.Data, d.Size()), aligned)
			}
		}
	}
	big := copyAligned(mp(func(e *msgpack.Encoder) error {
		return ndarrayMap(e, true, ">i4", []int64{1}, []byte{0, 0, 0, 7})
	}), 64)
	v, err := DecodeMsgpack(big)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.(tensor.Tensor); aliases(got.Data, big) || !bytes.Equal(got.Data, []byte{7, 0, 0, 0}) ||
		!bytes.Equal(big[len(big)-4:], []byte{0, 0, 0, 7}) {
		t.Errorf("big-endian decode = % x (aliases body: %v), body tail % x; want a swapped copy and the body untouched",
			got.Data, aliases(got.Data, big), big[len(big)-4:])
	}
}

// goldenValues are encoded to testdata/golden/<name>.msgpack.
func goldenValues() map[string]any {
	every := map[string]any{}
	for _, d := range tensor.AllDTypes() {
		every[d.String()] = tt(d, []int64{2, 2}, sampleData(d, 4))
		every[d.String()+"-scalar"] = Scalar{tt(d, []int64{}, sampleData(d, 1))}
	}
	ext := map[string]any{}
	for _, c := range canonicalExtCases {
		v, err := DecodeMsgpack(c.body)
		if err != nil {
			panic(err)
		}
		ext[c.name] = v
	}
	return map[string]any{
		"ndarray-float32": tt(tensor.Float32, []int64{2}, le(float32(1), float32(2))),
		"scalar-int32":    Scalar{tt(tensor.Int32, []int64{}, le(int32(5)))},
		"every-dtype":     every,
		"shapes": []any{
			tt(tensor.Float64, []int64{}, le(math.Pi)),
			tt(tensor.Int64, []int64{0, 3}, nil),
			tt(tensor.Uint8, []int64{1, 1, 1, 300}, bytes.Repeat([]byte{9}, 300)),
		},
		"ext-types": ext,
		"tree": map[string]any{
			"ints":   []any{int64(0), int64(127), int64(128), int64(-32), int64(-33), int64(255), int64(256), int64(65536), int64(-129), int64(math.MinInt64), int64(math.MaxInt64), uint64(math.MaxUint64)},
			"floats": []any{0.1, math.Inf(-1), float32(-0.5)},
			"strs":   []any{"", "ascii", strings.Repeat("é", 20), strings.Repeat("z", 300)},
			"bins":   []any{[]byte{}, bytes.Repeat([]byte{1}, 300)},
			"misc":   []any{nil, true, false, []any{}, map[string]any{}},
		},
	}
}

func TestGoldenMsgpack(t *testing.T) {
	for name, v := range goldenValues() {
		path := filepath.Join("testdata", "golden", name+".msgpack")
		got, err := EncodeMsgpack(v)
		if err != nil {
			t.Fatalf("%s: EncodeMsgpack: %v", name, err)
		}
		checkGolden(t, path, got)
		back, err := DecodeMsgpack(got)
		if err != nil || !cmp.Equal(back, v, treeOpts) {
			t.Errorf("%s: DecodeMsgpack(golden) = %v, %v; diff -got +want:\n%s", name, back, err, cmp.Diff(back, v, treeOpts))
		}
	}
}

// checkGolden compares got with the file at path, or rewrites it under
// -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./codec -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the encoding:\ngot  % x\nwant % x\n(run go test ./codec -run Golden -update if the change is intended)", path, got, want)
	}
}
