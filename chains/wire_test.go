package chains

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/modelserver/modelserver/codec"
	"github.com/modelserver/modelserver/tensor"
)

type inner struct {
	Label string `json:"label"`
}

type Embedded struct {
	Extra int `json:"extra"`
}

type sample struct {
	Embedded
	Name     string             `json:"name"`
	Count    int64              `json:"count"`
	Ratio    float64            `json:"ratio"`
	Small    uint8              `json:"small"`
	OK       bool               `json:"ok"`
	Raw      []byte             `json:"raw"`
	Tags     []string           `json:"tags"`
	Nested   map[string]inner   `json:"nested"`
	Ptr      *inner             `json:"ptr"`
	NilPtr   *inner             `json:"nil_ptr"`
	Array    tensor.Tensor      `json:"array"`
	OptArray *tensor.Tensor     `json:"opt_array"`
	When     time.Time          `json:"when"`
	ID       uuid.UUID          `json:"id"`
	Anything any                `json:"anything"`
	Fixed    [2]int             `json:"fixed"`
	Skipped  string             `json:"-"`
	Omitted  string             `json:"omitted,omitempty"`
	Scores   map[string]float64 `json:"scores"`
	private  int
}

func sampleValue() sample {
	arr, _ := tensor.New(tensor.Int32, []int64{2, 2}, []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0})
	return sample{
		Embedded: Embedded{Extra: 9},
		Name:     "naïve", Count: -1 << 40, Ratio: 0.1, Small: 255, OK: true, Raw: []byte{0, 1, 255},
		Tags: []string{"a", "b"}, Nested: map[string]inner{"x": {"y"}}, Ptr: &inner{"p"},
		Array: arr, OptArray: &arr, When: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		ID: uuid.MustParse("12345678-1234-5678-1234-567812345678"), Anything: []any{int64(1), "two"},
		Fixed: [2]int{7, 8}, Skipped: "skip", Scores: map[string]float64{"s": 1.5},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, binary := range []bool{false, true} {
		want := sampleValue()
		body, err := encodeValue(reflect.ValueOf(want), binary)
		if err != nil {
			t.Fatalf("binary=%v: encode: %v", binary, err)
		}
		var got sample
		if err := decodeValue(body, binary, reflect.ValueOf(&got).Elem()); err != nil {
			t.Fatalf("binary=%v: decode: %v", binary, err)
		}
		want.Skipped = ""
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(sample{}), cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
			t.Errorf("binary=%v: round trip (-want +got):\n%s", binary, diff)
		}
	}
}

func TestJSONLayout(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"bare string", "hi", `"hi"`},
		{"bare int", 6280, `6280`},
		{"list", []any{6280, "abc"}, `[6280,"abc"]`},
		{"struct by json tags", struct {
			Names []string `json:"names"`
		}{[]string{"a"}}, `{"names":["a"]}`},
		{"ndarray as NumpyArrayField", mustTensor(tensor.Int64, []int64{2, 2}, make([]byte, 32)), `{"data_b64":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","shape":[2,2],"dtype":"int64"}`},
		{"bytes as base64", []byte("hi"), `"aGk="`},
		{"no HTML escaping", "<a&b>", `"<a&b>"`},
		{"nil slice", []string(nil), `null`},
		{"uuid as text", uuid.MustParse("12345678-1234-5678-1234-567812345678"), `"12345678-1234-5678-1234-567812345678"`},
	}
	for _, tt := range tests {
		got, err := encodeValue(reflect.ValueOf(tt.v), false)
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: encode = %s, %v; want %s", tt.name, got, err, tt.want)
		}
	}
}

func mustTensor(d tensor.DType, shape []int64, data []byte) tensor.Tensor {
	t, err := tensor.New(d, shape, data)
	if err != nil {
		panic(err)
	}
	return t
}

func TestMsgpackNDArrayIsMsgpackNumpy(t *testing.T) {
	// np.array([1.0, 2.0], dtype=np.float32) as msgpack_numpy writes it
	// (truss-wire.md §3.2), nested under "x".
	arr := mustTensor(tensor.Float32, []int64{2}, []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40})
	body, err := encodeValue(reflect.ValueOf(struct {
		X tensor.Tensor `json:"x"`
	}{arr}), true)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("\x81\xa1x\x85\xc4\x02nd\xc3\xc4\x04type\xa3<f4\xc4\x04kind\xc4\x00\xc4\x05shape\x91\x02\xc4\x04data\xc4\x08\x00\x00\x80\x3f\x00\x00\x00\x40")
	if !bytes.Equal(body, want) {
		t.Errorf("msgpack = % x\nwant      % x", body, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	type in struct {
		N    int           `json:"n"`
		U    uint8         `json:"u"`
		Arr  tensor.Tensor `json:"arr"`
		List []int         `json:"list"`
	}
	tests := []struct{ body, want string }{
		{`{"n": "x"}`, `n: cannot use string "x" as int`},
		{`{"n": 1.5}`, `n: cannot use number 1.5 as int`},
		{`{"u": 256}`, `u: cannot use number 256 as uint8`},
		{`{"u": -1}`, `u: cannot use number -1 as uint8`},
		{`{"arr": {"data_b64": "!!", "shape": [1], "dtype": "int8"}}`, `arr: not an ndarray`},
		{`{"list": [1, "a"]}`, `list[1]: cannot use string "a" as int`},
		{`[1]`, `value: cannot use a list as chains.in`},
		{`{"n": 1} x`, `invalid JSON`},
		{`{`, `invalid JSON`},
	}
	for _, tt := range tests {
		var v in
		err := decodeValue([]byte(tt.body), false, reflect.ValueOf(&v).Elem())
		if !errors.Is(err, ErrSerialization) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("decode %s = %v, want ErrSerialization with %q", tt.body, err, tt.want)
		}
	}
}

func TestDecodeLaxNumbers(t *testing.T) {
	var v struct {
		F float32 `json:"f"`
		I int     `json:"i"`
	}
	if err := decodeValue([]byte(`{"f": 3, "i": 4.0}`), false, reflect.ValueOf(&v).Elem()); err != nil || v.F != 3 || v.I != 4 {
		t.Errorf("decode = %+v, %v; want ints into floats and whole floats into ints", v, err)
	}
}

func FuzzDecodeValue(f *testing.F) {
	good, _ := encodeValue(reflect.ValueOf(sampleValue()), false)
	goodBin, _ := encodeValue(reflect.ValueOf(sampleValue()), true)
	f.Add(good, false)
	f.Add(goodBin, true)
	f.Add([]byte(`{"name": 1, "tags": {}}`), false)
	f.Fuzz(func(t *testing.T, body []byte, binary bool) {
		var v sample
		if err := decodeValue(body, binary, reflect.ValueOf(&v).Elem()); err != nil {
			if !errors.Is(err, ErrSerialization) {
				t.Fatalf("error %v does not wrap ErrSerialization", err)
			}
			return
		}
		// Whatever decodes must encode again, except values JSON cannot
		// hold (NaN) and tensors that were never set.
		if _, err := encodeValue(reflect.ValueOf(v), true); err != nil && !errors.Is(err, ErrSerialization) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

func strp(s string) *string { return &s }
func intp(n int) *int       { return &n }

// pythonFormat is RemoteErrorDetail.format() of the detail below, as Python
// prints it (traceback.format_list layout).
const pythonFormat = `Chainlet-Traceback (most recent call last):
  File "/packages/itest_chain.py", line 52, in run_remote
    validate_data(data)
  File "/packages/itest_chain.py", line None, in validate_data
ValueError: This input is too long: 100.
(Exception class defined in ` + "`builtins`" + `.)`

func pythonDetail() RemoteErrorDetail {
	return RemoteErrorDetail{
		ExceptionClsName: "ValueError", ExceptionModuleName: strp("builtins"), ExceptionMessage: "This input is too long: 100.",
		UserStackTrace: []StackFrame{
			{Filename: "/packages/itest_chain.py", Lineno: intp(52), Name: "run_remote", Line: strp("validate_data(data)")},
			{Filename: "/packages/itest_chain.py", Name: "validate_data"},
		},
	}
}

func TestFormatLikePython(t *testing.T) {
	if got := pythonDetail().Format(); got != pythonFormat {
		t.Errorf("Format:\n%s\nwant:\n%s", got, pythonFormat)
	}
	d := pythonDetail()
	d.ExceptionModuleName = nil
	if got := d.Format(); strings.Contains(got, "Exception class defined") {
		t.Errorf("Format without a module names one:\n%s", got)
	}
}

func TestChainedMessageLikeTruss(t *testing.T) {
	base := "Error calling dependency Chainlet `TextReplicator`, HTTP status=500, trace ID=`abc`."
	want := "(showing chained remote errors, root error at the bottom)\n" +
		"├─ " + base + "\n" +
		"│   Chainlet-Traceback (most recent call last):\n" +
		"│     File \"/packages/itest_chain.py\", line 52, in run_remote\n" +
		"│       validate_data(data)\n" +
		"│     File \"/packages/itest_chain.py\", line None, in validate_data\n" +
		"│   ValueError: This input is too long: 100.\n" +
		"╰   (Exception class defined in `builtins`.)"
	if got := chainedMessage(base, pythonDetail()); got != want {
		t.Errorf("chained:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseChainedRoundTrip(t *testing.T) {
	root := pythonDetail()
	mid := RemoteErrorDetail{
		ExceptionClsName: "ValueError", ExceptionModuleName: strp("builtins"),
		ExceptionMessage: chainedMessage("Error calling dependency Chainlet `Leaf`, HTTP status=500, trace ID=`t`.", root),
		UserStackTrace:   []StackFrame{{Filename: "mid.go", Lineno: intp(3), Name: "(*Mid).RunRemote", Line: strp("return m.Leaf.RunRemote(ctx, in)")}},
	}
	msg := chainedMessage("Error calling dependency Chainlet `Mid`, HTTP status=503, trace ID=`t`.", mid)
	got := parseChained(msg)
	if got == nil || got.Chainlet != "Mid" || got.Status != 503 || got.cause == nil || got.cause.Chainlet != "Leaf" {
		t.Fatalf("parseChained = %+v, want Mid (503) then Leaf", got)
	}
	if diff := cmp.Diff(mid, *got.Detail); diff != "" {
		t.Errorf("Mid's detail (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(root, *got.Root().Detail); diff != "" {
		t.Errorf("root detail (-want +got):\n%s", diff)
	}
	if got.Error() != msg {
		t.Errorf("re-formatted error differs:\n%s\nwant\n%s", got.Error(), msg)
	}
}

func FuzzParseChained(f *testing.F) {
	f.Add(chainedMessage("Error calling dependency Chainlet `A`, HTTP status=500, trace ID=``.", pythonDetail()))
	f.Add("(showing chained remote errors, root error at the bottom)\n├─ x\n│   y")
	f.Fuzz(func(t *testing.T, msg string) {
		e := parseChained(msg)
		if e == nil {
			return
		}
		// What parses must print back to a message that parses the same.
		again := parseChained(e.Error())
		if again == nil || again.Chainlet != e.Chainlet || again.Status != e.Status || again.Detail.ExceptionClsName != e.Detail.ExceptionClsName {
			t.Fatalf("reparse of %q differs: %+v vs %+v", msg, again, e)
		}
	})
}

func TestParseErrorResponse(t *testing.T) {
	detail, _ := json.Marshal(map[string]any{"error": pythonDetail()})
	tests := []struct {
		name, body, wantMsg string
		wantDetail          bool
	}{
		{"detail", string(detail), "", true},
		{"plain truss error", `{"error":"Internal Server Error (in model/chainlet)."}`, "Internal Server Error (in model/chainlet).", false},
		{"not JSON", `<html>`, "", false},
		{"no error key", `{"detail":"Not Found"}`, "Could not get `error` field from JSON response.", false},
		{"lineno not an int", `{"error":{"exception_cls_name":"E","exception_module_name":null,"exception_message":"m","user_stack_trace":[{"filename":"f","lineno":"3","name":"n","line":null}]}}`, "Could not parse chainlet error: ", false},
		{"missing key", `{"error":{"exception_cls_name":"E","exception_message":"m","user_stack_trace":[]}}`, "Could not parse chainlet error: ", false},
	}
	for _, tt := range tests {
		e := parseErrorResponse("Dep", 500, "tp", []byte(tt.body))
		if (e.Detail != nil) != tt.wantDetail || !strings.HasPrefix(e.Message, tt.wantMsg) {
			t.Errorf("%s: got detail %v message %q", tt.name, e.Detail, e.Message)
		}
		if !strings.Contains(e.Error(), "Error calling dependency Chainlet `Dep`, HTTP status=500, trace ID=`tp`.") {
			t.Errorf("%s: message %q lacks Truss's base message", tt.name, e.Error())
		}
	}
}

func FuzzParseErrorResponse(f *testing.F) {
	detail, _ := json.Marshal(map[string]any{"error": pythonDetail()})
	f.Add(detail)
	f.Add([]byte(`{"error":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e := parseErrorResponse("Dep", 500, "", body)
		_ = e.Error()
		if e.Detail != nil && e.Detail.UserStackTrace == nil {
			t.Fatal("a detail without a stack trace list was accepted")
		}
	})
}

func TestErrorDetailOfGoErrors(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		cls, module string
		status      int
	}{
		{"ValueError", ValueError("bad %d", 1), "ValueError", "builtins", 500},
		{"HTTPError", HTTPError(429, "slow down"), "HTTPException", "fastapi", 429},
		{"wrapped", errors.Join(errors.New("ctx"), NewError("KeyError", "builtins", "k")), "KeyError", "builtins", 500},
		{"plain", io.ErrUnexpectedEOF, "errorString", "errors", 500},
		{"wrapped plain", fmt.Errorf("reading: %w", &fs.PathError{Op: "open", Path: "x", Err: io.EOF}), "PathError", "io/fs", 500},
		{"timeout", ErrTimeout, "TimeoutError", "builtins", 500},
	}
	for _, tt := range tests {
		d, status := errorDetail(tt.err)
		if d.ExceptionClsName != tt.cls || d.ExceptionModuleName == nil || *d.ExceptionModuleName != tt.module || status != tt.status || d.UserStackTrace == nil {
			t.Errorf("%s: detail %+v status %d, want %s.%s %d", tt.name, d, status, tt.module, tt.cls, tt.status)
		}
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	for _, p := range [][]byte{[]byte(`{"a":1}`), {}, bytes.Repeat([]byte("x"), 70000)} {
		buf.Write(appendFrame(nil, frameItem, p))
	}
	buf.Write(appendFrame(nil, frameFooter, []byte("f")))
	r := bytes.NewReader(buf.Bytes())
	var lens []int
	for {
		d, p, err := readFrame(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lens = append(lens, int(d)*1000000+len(p))
	}
	if want := []int{3000007, 3000000, 3070000, 4000001}; !cmp.Equal(lens, want) {
		t.Errorf("frames %v, want %v", lens, want)
	}
	for _, bad := range []string{"\x03\x00\x00", "\x03\x00\x00\x00\x05abc", "\x09\x00\x00\x00\x00", "\x03\xff\xff\xff\xff"} {
		if _, _, err := readFrame(strings.NewReader(bad)); !errors.Is(err, ErrStreamFraming) {
			t.Errorf("readFrame(%q) = %v, want ErrStreamFraming", bad, err)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, frameItem, []byte(`{"a":1}`)))
	f.Add([]byte("\x02\x00\x00\x00\x01x\x04\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			d, p, err := readFrame(r)
			if err != nil {
				return
			}
			if d < frameHeader || d > frameFooter || len(p) > len(data) {
				t.Fatalf("frame %d of %d bytes from %d input bytes", d, len(p), len(data))
			}
		}
	})
}

func TestCompleteUTF8(t *testing.T) {
	s := []byte("aü€😀")
	for cut := range len(s) + 1 {
		n := completeUTF8(s[:cut])
		if n > cut || !strings.HasPrefix(string(s), string(s[:n])) || cut-n > 3 {
			t.Errorf("completeUTF8(%q) = %d", s[:cut], n)
		}
	}
}

func TestParseDynamicConfig(t *testing.T) {
	data := `{"Whisper": {"predict_url": "https://chain-abc123.api.example/deployment/dep/chainlet/cl/run_remote",
	  "internal_url": {"gateway_run_remote_url": "https://aws-us-west-2.api.example/deployment/dep/chainlet/cl/run_remote", "hostname": "chain-abc123.api.example"}},
	  "Local": {"predict_url": "http://host.docker.internal:8081/v1/models/model:predict"}}`
	got, err := ParseDynamicConfig([]byte(data))
	want := map[string]Endpoint{
		"Whisper": {URL: "https://aws-us-west-2.api.example/deployment/dep/chainlet/cl/run_remote", Host: "chain-abc123.api.example"},
		"Local":   {URL: "http://host.docker.internal:8081/v1/models/model:predict"},
	}
	if err != nil || !cmp.Equal(got, want) {
		t.Errorf("ParseDynamicConfig = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{`[]`, `{"A": {}}`, `{"A": {"predict_url": 3}}`} {
		if _, err := ParseDynamicConfig([]byte(bad)); !errors.Is(err, ErrBadDynamicConfig) {
			t.Errorf("ParseDynamicConfig(%s) = %v, want ErrBadDynamicConfig", bad, err)
		}
	}
}

func FuzzParseDynamicConfig(f *testing.F) {
	f.Add([]byte(`{"A": {"predict_url": "http://a"}, "B": {"internal_url": {"gateway_run_remote_url": "http://b", "hostname": "h"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		eps, err := ParseDynamicConfig(data)
		if err != nil {
			if !errors.Is(err, ErrBadDynamicConfig) {
				t.Fatal(err)
			}
			return
		}
		for name, ep := range eps {
			if ep.URL == "" {
				t.Fatalf("endpoint %q without a URL", name)
			}
		}
	})
}

func TestMsgpackTreeKeepsCodecTypes(t *testing.T) {
	d := codec.Decimal("1.50")
	body, err := encodeValue(reflect.ValueOf(map[string]codec.Decimal{"d": d}), true)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]codec.Decimal
	if err := decodeValue(body, true, reflect.ValueOf(&got).Elem()); err != nil || got["d"] != d {
		t.Errorf("decimal round trip = %v, %v", got, err)
	}
}

func TestReadFramesOrder(t *testing.T) {
	type page = Framed[inner, inner, inner]
	frame := func(d byte) []byte { return appendFrame(nil, d, []byte(`{"label":"x"}`)) }
	cat := func(ds ...byte) []byte {
		var b []byte
		for _, d := range ds {
			b = append(b, frame(d)...)
		}
		return b
	}
	tests := []struct {
		name  string
		item  reflect.Type
		body  []byte
		items int
		err   string
	}{
		{"framed in order", reflect.TypeFor[page](), cat(frameHeader, frameItem, frameItem, frameFooter), 4, ""},
		{"framed items only", reflect.TypeFor[page](), cat(frameItem), 1, ""},
		{"header after an item", reflect.TypeFor[page](), cat(frameItem, frameHeader), 1, "a header frame after the first frame"},
		{"frame after the footer", reflect.TypeFor[page](), cat(frameFooter, frameItem), 1, "a frame after the footer"},
		{"plain items get a header", reflect.TypeFor[inner](), cat(frameHeader), 0, "use chains.Framed"},
		{"partial frame", reflect.TypeFor[inner](), append(cat(frameItem), 3, 0), 1, "partial frame header"},
	}
	for _, tt := range tests {
		var n int
		var gotErr error
		readFrames(tt.item, bytes.NewReader(tt.body), func(v reflect.Value, err error) bool {
			if err != nil {
				gotErr = err
				return false
			}
			n++
			return true
		})
		if n != tt.items || (tt.err == "") != (gotErr == nil) || (gotErr != nil && !strings.Contains(gotErr.Error(), tt.err)) {
			t.Errorf("%s: %d items, error %v; want %d items and error %q", tt.name, n, gotErr, tt.items, tt.err)
		}
	}
}
