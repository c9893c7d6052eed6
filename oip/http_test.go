package oip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/testmodel"
	"github.com/modelserver/modelserver/tensor"
)

// The mixed model: onnxgen.MixedFixture's signature and its Go reference.
var (
	mixedSignature = testmodel.MixedSignature
	mixedFake      = predictFunc(testmodel.Mixed)
)

func newHTTP(t *testing.T, m *Model, opts HandlerOptions) (*Handler, *httptest.Server) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := NewHandler(opts)
	if m != nil {
		h.SetReady(*m)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return h, ts
}

type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func doHTTP(t *testing.T, ts *httptest.Server, method, path string, header map[string]string, body []byte) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{resp.StatusCode, resp.Header, b}
}

func TestHTTPRoutesWhileLoadingAndClosing(t *testing.T) {
	h, ts := newHTTP(t, nil, HandlerOptions{ServerVersion: "0.1.0"})
	check := func(phase string, wantReady bool) {
		t.Helper()
		notReady := 503
		if wantReady {
			notReady = 200
		}
		tests := []struct {
			method, path string
			status       int
			body         string
		}{
			{"GET", "/v2/health/live", 200, `{"live":true}`},
			{"GET", "/v2", 200, `{"name":"modelserver","version":"0.1.0","extensions":["binary_tensor_data"]}`},
			{"GET", "/v2/health/ready", notReady, ""},
			{"GET", "/v2/models/mixed/ready", notReady, ""},
			{"GET", "/v2/models/mixed", notReady, ""},
			{"POST", "/v2/models/mixed/infer", map[bool]int{true: 400, false: 503}[wantReady], ""},
		}
		for _, tt := range tests {
			r := doHTTP(t, ts, tt.method, tt.path, nil, nil)
			if r.status != tt.status || (tt.body != "" && string(r.body) != tt.body) {
				t.Errorf("%s: %s %s = %d %s, want %d %s", phase, tt.method, tt.path, r.status, r.body, tt.status, tt.body)
			}
			if r.status == 503 && !strings.HasPrefix(string(r.body), `{"error":"`) {
				t.Errorf("%s: %s %s body = %s, want an OIP error object", phase, tt.method, tt.path, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s: %s %s Content-Type = %q", phase, tt.method, tt.path, ct)
			}
		}
	}
	check("loading", false)
	h.SetReady(Model{Name: "mixed", Signature: mixedSignature, Predictor: mixedFake})
	check("ready", true)
	h.SetClosing()
	check("closing", false)
}

func TestHTTPModelRoutes(t *testing.T) {
	_, ts := newHTTP(t, &Model{Name: "mixed", Signature: mixedSignature, Predictor: mixedFake}, HandlerOptions{})
	metadata := `{"name":"mixed","versions":["1"],"platform":"onnxruntime_onnx",` +
		`"inputs":[{"name":"a","datatype":"FP32","shape":[-1,4]},{"name":"b","datatype":"INT64","shape":[-1,4]},{"name":"flag","datatype":"BOOL","shape":[-1,1]}],` +
		`"outputs":[{"name":"sum","datatype":"FP32","shape":[-1,4]},{"name":"row_total","datatype":"INT64","shape":[-1]},` +
		`{"name":"positive","datatype":"BOOL","shape":[-1,4]},{"name":"scaled","datatype":"FP64","shape":[-1,4]}]}`
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/v2/health/ready", 200, `{"ready":true}`},
		{"GET", "/v2/models/mixed/ready", 200, `{"name":"mixed","ready":true}`},
		{"GET", "/v2/models/mixed/versions/1/ready", 200, `{"name":"mixed","ready":true}`},
		{"GET", "/v2/models/mixed", 200, metadata},
		{"GET", "/v2/models/mixed/versions/1", 200, metadata},
		{"GET", "/v2/models/other/ready", 404, `{"error":"model not found: unknown model \"other\" (this server serves \"mixed\")"}`},
		{"GET", "/v2/models/mixed/versions/2", 404, `{"error":"model not found: model \"mixed\" has no version \"2\" (served version: \"1\")"}`},
		{"POST", "/v2/models/other/infer", 404, ""},
		{"GET", "/v2/models/mixed/infer", 405, ""},
		{"POST", "/v2/health/live", 405, ""},
	}
	for _, tt := range tests {
		r := doHTTP(t, ts, tt.method, tt.path, nil, nil)
		if r.status != tt.status || (tt.body != "" && string(r.body) != tt.body) {
			t.Errorf("%s %s = %d %s, want %d %s", tt.method, tt.path, r.status, r.body, tt.status, tt.body)
		}
	}
}

func TestHTTPInferJSON(t *testing.T) {
	_, ts := newHTTP(t, &Model{Name: "mixed", Signature: mixedSignature, Predictor: mixedFake}, HandlerOptions{})
	body := `{"id":"req-1","inputs":[` +
		`{"name":"a","shape":[1,4],"datatype":"FP32","data":[[1,-2,0.5,3]]},` +
		`{"name":"b","shape":[1,4],"datatype":"INT64","data":[1,2,3,4]},` +
		`{"name":"flag","shape":[1,1],"datatype":"BOOL","data":[[true]]}]}`
	want := `{"model_name":"mixed","model_version":"1","id":"req-1","outputs":[` +
		`{"name":"sum","datatype":"FP32","shape":[1,4],"data":[2,0,3.5,7]},` +
		`{"name":"row_total","datatype":"INT64","shape":[1],"data":[10]},` +
		`{"name":"positive","datatype":"BOOL","shape":[1,4],"data":[true,false,true,true]},` +
		`{"name":"scaled","datatype":"FP64","shape":[1,4],"data":[2.5,-5,1.25,7.5]}]}`
	for _, path := range []string{"/v2/models/mixed/infer", "/v2/models/mixed/versions/1/infer"} {
		r := doHTTP(t, ts, "POST", path, map[string]string{"Content-Type": "application/json"}, []byte(body))
		if r.status != 200 || string(r.body) != want {
			t.Errorf("POST %s = %d\n%s\nwant 200\n%s", path, r.status, r.body, want)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" || r.header.Get(HeaderInferenceHeaderContentLength) != "" {
			t.Errorf("POST %s headers = %v", path, r.header)
		}
	}

	// Requested outputs come back in request order, and only those.
	sel := `{"inputs":[{"name":"a","shape":[1,4],"datatype":"FP32","data":[1,1,1,1]},` +
		`{"name":"b","shape":[1,4],"datatype":"INT64","data":[0,0,0,0]},{"name":"flag","shape":[1,1],"datatype":"BOOL","data":[false]}],` +
		`"outputs":[{"name":"row_total"},{"name":"sum","parameters":{"binary_data":false}}]}`
	r := doHTTP(t, ts, "POST", "/v2/models/mixed/infer", nil, []byte(sel))
	wantSel := `{"model_name":"mixed","model_version":"1","outputs":[` +
		`{"name":"row_total","datatype":"INT64","shape":[1],"data":[0]},{"name":"sum","datatype":"FP32","shape":[1,4],"data":[1,1,1,1]}]}`
	if r.status != 200 || string(r.body) != wantSel {
		t.Errorf("selected outputs = %d %s, want %s", r.status, r.body, wantSel)
	}
}

// TestHTTPInferBinaryLayout checks Triton's binary tensor data extension
// byte for byte, in both directions.
func TestHTTPInferBinaryLayout(t *testing.T) {
	_, ts := newHTTP(t, &Model{Name: "mixed", Signature: mixedSignature, Predictor: mixedFake}, HandlerOptions{})
	header := `{"parameters":{"binary_data_output":true},"inputs":[` +
		`{"name":"a","shape":[2,4],"datatype":"FP32","parameters":{"binary_data_size":32}},` +
		`{"name":"flag","shape":[2,1],"datatype":"BOOL","data":[true,false]},` +
		`{"name":"b","shape":[2,4],"datatype":"INT64","parameters":{"binary_data_size":64}}],` +
		`"outputs":[{"name":"sum","parameters":{"binary_data":true}},{"name":"row_total"},{"name":"positive","parameters":{"binary_data":false}}]}`
	a := f32([]int64{2, 4}, 1, -2, 0.5, 3, -1, 2, 0, 4)
	b := i64([]int64{2, 4}, 1, 2, 3, 4, 10, 20, 30, 40)
	body := append(append([]byte(header), a.Data...), b.Data...)
	r := doHTTP(t, ts, "POST", "/v2/models/mixed/infer", map[string]string{
		"Content-Type":                     "application/octet-stream",
		HeaderInferenceHeaderContentLength: strconv.Itoa(len(header)),
	}, body)

	wantHeader := `{"model_name":"mixed","model_version":"1","outputs":[` +
		`{"name":"sum","datatype":"FP32","shape":[2,4],"parameters":{"binary_data_size":32}},` +
		`{"name":"row_total","datatype":"INT64","shape":[2],"parameters":{"binary_data_size":16}},` +
		`{"name":"positive","datatype":"BOOL","shape":[2,4],"data":[true,false,true,true,false,false,false,false]}]}`
	want := []byte(wantHeader)
	want = append(want, f32(nil, 2, 0, 3.5, 7, 9, 22, 30, 44).Data...)
	want = append(want, i64(nil, 10, 100).Data...)
	if r.status != 200 || !bytes.Equal(r.body, want) {
		t.Fatalf("binary infer = %d\n%q\nwant\n%q", r.status, r.body, want)
	}
	if got := r.header.Get(HeaderInferenceHeaderContentLength); got != strconv.Itoa(len(wantHeader)) {
		t.Errorf("%s = %q, want %d", HeaderInferenceHeaderContentLength, got, len(wantHeader))
	}
	if got := r.header.Get("Content-Type"); got != "application/octet-stream" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(want)) {
		t.Errorf("Content-Length = %q, want %d", got, len(want))
	}
}

func TestHTTPRawBinaryRequest(t *testing.T) {
	sig := engine.Signature{
		Inputs:  []engine.TensorSpec{{Name: "x", DType: tensor.Float32, Shape: []int64{-1, 2}}},
		Outputs: []engine.TensorSpec{{Name: "y", DType: tensor.Float32, Shape: []int64{-1, 2}}},
	}
	var gotShape []int64
	echo := predictFunc(func(_ context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		gotShape = in["x"].Shape
		return map[string]tensor.Tensor{"y": in["x"]}, nil
	})
	_, ts := newHTTP(t, &Model{Name: "echo", Signature: sig, Predictor: echo}, HandlerOptions{})
	x := f32(nil, 1, 2, 3, 4, 5, 6)
	r := doHTTP(t, ts, "POST", "/v2/models/echo/infer", map[string]string{HeaderInferenceHeaderContentLength: "0"}, x.Data)
	wantHeader := `{"model_name":"echo","model_version":"1","outputs":[{"name":"y","datatype":"FP32","shape":[3,2],"parameters":{"binary_data_size":24}}]}`
	if r.status != 200 || !bytes.Equal(r.body, append([]byte(wantHeader), x.Data...)) {
		t.Errorf("raw binary infer = %d %q", r.status, r.body)
	}
	if fmt.Sprint(gotShape) != "[3 2]" {
		t.Errorf("raw binary input shape = %v, want [3 2]", gotShape)
	}
	r = doHTTP(t, ts, "POST", "/v2/models/echo/infer", map[string]string{HeaderInferenceHeaderContentLength: "0"}, x.Data[:10])
	if r.status != 400 || !strings.Contains(string(r.body), "not a whole number of float32 elements") {
		t.Errorf("raw binary infer of 10 bytes = %d %s, want 400", r.status, r.body)
	}
}

// TestHTTPRoundTripEveryDatatype echoes a tensor of every datatype through
// JSON (where JSON can carry it) and through binary data.
func TestHTTPRoundTripEveryDatatype(t *testing.T) {
	for _, d := range oipDTypes() {
		dt := mustDatatype(d)
		sig := engine.Signature{
			Inputs:  []engine.TensorSpec{{Name: "x", DType: d, Shape: []int64{-1, -1}}},
			Outputs: []engine.TensorSpec{{Name: "y", DType: d, Shape: []int64{-1, -1}}},
		}
		echo := predictFunc(func(_ context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
			return map[string]tensor.Tensor{"y": in["x"]}, nil
		})
		_, ts := newHTTP(t, &Model{Name: "echo", Signature: sig, Predictor: echo}, HandlerOptions{})
		x := patterned(d, []int64{3, 5})
		half := d == tensor.Float16 || d == tensor.BFloat16

		// Binary in, binary out.
		header := fmt.Sprintf(`{"inputs":[{"name":"x","shape":[3,5],"datatype":%q,"parameters":{"binary_data_size":%d}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`, dt, len(x.Data))
		r := doHTTP(t, ts, "POST", "/v2/models/echo/infer", map[string]string{HeaderInferenceHeaderContentLength: strconv.Itoa(len(header))},
			append([]byte(header), x.Data...))
		n, _ := strconv.Atoi(r.header.Get(HeaderInferenceHeaderContentLength))
		if r.status != 200 || n == 0 || n > len(r.body) || !bytes.Equal(r.body[n:], x.Data) {
			t.Errorf("%s binary round trip = %d %q", dt, r.status, r.body)
		}

		// JSON in, JSON out (16-bit floats are refused in and forced to
		// binary out).
		data := string(appendJSONData(nil, x))
		if half {
			data = "[" + strings.TrimSuffix(strings.Repeat("0,", 15), ",") + "]"
		}
		req := fmt.Sprintf(`{"inputs":[{"name":"x","shape":[3,5],"datatype":%q,"data":%s}]}`, dt, data)
		r = doHTTP(t, ts, "POST", "/v2/models/echo/infer", nil, []byte(req))
		if half {
			if r.status != 400 || !strings.Contains(string(r.body), "16-bit floats cannot be sent as JSON") {
				t.Errorf("%s JSON input = %d %s, want 400", dt, r.status, r.body)
			}
			continue
		}
		want := fmt.Sprintf(`{"model_name":"echo","model_version":"1","outputs":[{"name":"y","datatype":%q,"shape":[3,5],"data":%s}]}`, dt, data)
		if r.status != 200 || string(r.body) != want {
			t.Errorf("%s JSON round trip = %d\n%s\nwant\n%s", dt, r.status, r.body, want)
		}
	}
}

func TestHTTPHalfOutputsAreBinary(t *testing.T) {
	sig := engine.Signature{
		Inputs:  []engine.TensorSpec{{Name: "x", DType: tensor.Float32, Shape: []int64{1}}},
		Outputs: []engine.TensorSpec{{Name: "h", DType: tensor.Float16, Shape: []int64{1}}},
	}
	half := predictFunc(func(context.Context, map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		return map[string]tensor.Tensor{"h": {DType: tensor.Float16, Shape: []int64{1}, Data: []byte{0x00, 0x3c}}}, nil
	})
	_, ts := newHTTP(t, &Model{Name: "half", Signature: sig, Predictor: half}, HandlerOptions{})
	r := doHTTP(t, ts, "POST", "/v2/models/half/infer", nil, []byte(`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`))
	wantHeader := `{"model_name":"half","model_version":"1","outputs":[{"name":"h","datatype":"FP16","shape":[1],"parameters":{"binary_data_size":2}}]}`
	if r.status != 200 || !bytes.Equal(r.body, append([]byte(wantHeader), 0x00, 0x3c)) || r.header.Get(HeaderInferenceHeaderContentLength) != strconv.Itoa(len(wantHeader)) {
		t.Errorf("FP16 output = %d %q %v", r.status, r.body, r.header)
	}
}

func TestHTTPJSONNonFinite(t *testing.T) {
	got := string(appendJSONData(nil, f32([]int64{4}, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0.1)))
	if want := "[null,null,null,0.1]"; got != want {
		t.Errorf("appendJSONData(NaN, +Inf, -Inf, 0.1) = %s, want %s", got, want)
	}
}

func TestParseJSONData(t *testing.T) {
	tests := []struct {
		data    string
		dtype   tensor.DType
		n       int64
		want    []byte
		wantErr string
	}{
		{`[[1,2],[3,4]]`, tensor.Int8, 4, []byte{1, 2, 3, 4}, ""},
		{` [ [ 1 , -2 ] ] `, tensor.Int16, 2, []byte{1, 0, 0xfe, 0xff}, ""},
		{`7`, tensor.Uint8, 1, []byte{7}, ""},
		{`[]`, tensor.Float32, 0, []byte{}, ""},
		{`[true,false]`, tensor.Bool, 2, []byte{1, 0}, ""},
		{`[1e0, 0.1]`, tensor.Float32, 2, f32(nil, 1, 0.1).Data, ""},
		{`[18446744073709551615]`, tensor.Uint64, 1, bytes.Repeat([]byte{0xff}, 8), ""},
		{`[-9223372036854775808]`, tensor.Int64, 1, i64(nil, math.MinInt64).Data, ""},
		{`[1,2,3]`, tensor.Int32, 2, nil, "needs 2 elements, data holds more"},
		{`[1]`, tensor.Int32, 2, nil, "needs 2 elements, data holds 1"},
		{`[1]`, tensor.Int32, 1 << 40, nil, "needs 1099511627776 elements, data holds at most 3"},
		{`[128]`, tensor.Int8, 1, nil, "element 0: 128 is out of range for INT8"},
		{`[-1]`, tensor.Uint32, 1, nil, "element 0: -1 is not a valid UINT32 value"},
		{`[1.5]`, tensor.Int64, 1, nil, "element 0: 1.5 is not a valid INT64 value"},
		{`[1e39]`, tensor.Float32, 1, nil, "element 0: 1e39 is out of range for FP32"},
		{`[1]`, tensor.Bool, 1, nil, "element 0: 1 is not true or false"},
		{`["a"]`, tensor.Float32, 1, nil, "element 0 is not a number or bool"},
		{`[{"a":1}]`, tensor.Float32, 1, nil, "element 0 is not a number or bool"},
		{`[null]`, tensor.Float64, 1, nil, "element 0: null is not a valid FP64 value"},
		{`[1]`, tensor.Float16, 1, nil, "16-bit floats cannot be sent as JSON"},
	}
	for _, tt := range tests {
		got, err := parseJSONData([]byte(tt.data), tt.dtype, tt.n)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseJSONData(%s, %v, %d) = %v, want error %q", tt.data, tt.dtype, tt.n, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("parseJSONData(%s, %v, %d) = % x, %v, want % x", tt.data, tt.dtype, tt.n, got, err, tt.want)
		}
	}
}

func TestHTTPInferErrors(t *testing.T) {
	ok := `{"inputs":[{"name":"a","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]},` +
		`{"name":"b","shape":[1,4],"datatype":"INT64","data":[1,2,3,4]},{"name":"flag","shape":[1,1],"datatype":"BOOL","data":[true]}]}`
	tests := []struct {
		name      string
		headerLen string
		body      string
		status    int
		want      string
	}{
		{"malformed JSON", "", `{"inputs":[`, 400, "malformed inference request JSON"},
		{"unknown datatype", "", strings.Replace(ok, `"INT64"`, `"LONG"`, 1), 400, `input \"b\": unsupported datatype \"LONG\"`},
		{"bytes datatype", "", strings.Replace(ok, `"INT64"`, `"BYTES"`, 1), 400, `unsupported datatype BYTES`},
		{"wrong dtype for model", "", strings.Replace(ok, `"INT64"`, `"INT32"`, 1), 400, `input \"b\": expected dtype int64, received int32`},
		{"missing input", "", strings.Replace(ok, `"flag"`, `"flog"`, 1), 400, `missing input \"flag\"`},
		{"shape overflow", "", strings.Replace(ok, `[1,4],"datatype":"FP32"`, `[4294967296,4294967296],"datatype":"FP32"`, 1), 400, `input \"a\": invalid shape`},
		{"no shape", "", `{"inputs":[{"name":"a","datatype":"FP32","data":[1]}]}`, 400, `input \"a\": no shape`},
		{"no data", "", `{"inputs":[{"name":"a","shape":[1],"datatype":"FP32"}]}`, 400, `input \"a\": no data`},
		{"count", "", strings.Replace(ok, `[1,2,3,4]}`, `[1,2,3]}`, 1), 400, `input \"a\": FP32 [1,4]: needs 4 elements, data holds 3`},
		{"unknown output", "", strings.TrimSuffix(ok, "}") + `,"outputs":[{"name":"nope"}]}`, 400, `unknown output \"nope\"`},
		{"header length too big", "9999", ok, 400, `Inference-Header-Content-Length \"9999\" is not a length within the body`},
		{"header length negative", "-1", ok, 400, "is not a length within the body"},
		{"binary size mismatch", "", `{"inputs":[{"name":"a","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":12}}]}`, 400,
			`input \"a\": binary_data_size is 12, FP32 [1,4] needs 16 bytes`},
		{"binary size not an integer", "", `{"inputs":[{"name":"a","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":"16"}}]}`, 400,
			`parameter \"binary_data_size\" must be a non-negative integer`},
		{"binary_data_output not a bool", "", strings.Replace(ok, `{"inputs"`, `{"parameters":{"binary_data_output":1},"inputs"`, 1), 400,
			`parameter \"binary_data_output\" must be true or false`},
	}
	_, ts := newHTTP(t, &Model{Name: "mixed", Signature: mixedSignature, Predictor: mixedFake}, HandlerOptions{})
	for _, tt := range tests {
		h := map[string]string{}
		if tt.headerLen != "" {
			h[HeaderInferenceHeaderContentLength] = tt.headerLen
		}
		r := doHTTP(t, ts, "POST", "/v2/models/mixed/infer", h, []byte(tt.body))
		if r.status != tt.status || !strings.HasPrefix(string(r.body), `{"error":"`) || !strings.Contains(string(r.body), tt.want) {
			t.Errorf("%s: = %d %s, want %d containing %s", tt.name, r.status, r.body, tt.status, tt.want)
		}
	}

	// Binary sections that do not add up.
	header := `{"inputs":[{"name":"a","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}`
	for _, tc := range []struct {
		extra int
		want  string
	}{{-4, "only 12 bytes of binary data are left"}, {4, "last 4 bytes of binary data belong to no input"}} {
		body := append([]byte(header), make([]byte, 16+tc.extra)...)
		r := doHTTP(t, ts, "POST", "/v2/models/mixed/infer", map[string]string{HeaderInferenceHeaderContentLength: strconv.Itoa(len(header))}, body)
		if r.status != 400 || !strings.Contains(string(r.body), tc.want) {
			t.Errorf("binary section of %d extra bytes = %d %s, want 400 %q", tc.extra, r.status, r.body, tc.want)
		}
	}
}

func TestHTTPInferBodyTooLarge(t *testing.T) {
	_, ts := newHTTP(t, &Model{Name: "mixed", Signature: mixedSignature, Predictor: mixedFake}, HandlerOptions{MaxRequestBytes: 64})
	r := doHTTP(t, ts, "POST", "/v2/models/mixed/infer", nil, bytes.Repeat([]byte(" "), 65))
	if r.status != 413 || string(r.body) != `{"error":"request body too large"}` {
		t.Errorf("65-byte body with a 64-byte limit = %d %s, want 413", r.status, r.body)
	}
}

func TestHTTPInferPredictorErrors(t *testing.T) {
	body := `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`
	sig := engine.Signature{
		Inputs:  []engine.TensorSpec{{Name: "x", DType: tensor.Float32, Shape: []int64{1}}},
		Outputs: []engine.TensorSpec{{Name: "y", DType: tensor.Float32, Shape: []int64{1}}},
	}
	tests := []struct {
		name   string
		err    error
		status int
	}{
		{"queue full", fmt.Errorf("predict: %w", batching.ErrQueueFull), 429},
		{"queue timeout", batching.ErrQueueTimeout, 429},
		{"runtime", fmt.Errorf("%w: Non-zero status code", engine.ErrRuntime), 500},
		{"closed", batching.ErrClosed, 503},
		{"deadline", context.DeadlineExceeded, 504},
	}
	for _, tt := range tests {
		fail := predictFunc(func(context.Context, map[string]tensor.Tensor) (map[string]tensor.Tensor, error) { return nil, tt.err })
		_, ts := newHTTP(t, &Model{Name: "m", Signature: sig, Predictor: fail}, HandlerOptions{})
		r := doHTTP(t, ts, "POST", "/v2/models/m/infer", nil, []byte(body))
		want, _ := json.Marshal(map[string]string{"error": tt.err.Error()})
		if r.status != tt.status || !bytes.Equal(r.body, want) {
			t.Errorf("%s: = %d %s, want %d %s", tt.name, r.status, r.body, tt.status, want)
		}
	}

	// A model that only streams cannot answer /infer.
	_, ts := newHTTP(t, &Model{Name: "m", Signature: sig, Streamer: nopStreamer{}}, HandlerOptions{})
	r := doHTTP(t, ts, "POST", "/v2/models/m/infer", nil, []byte(body))
	if r.status != 501 || !strings.Contains(string(r.body), "use gRPC ModelStreamInfer") {
		t.Errorf("streaming model /infer = %d %s, want 501", r.status, r.body)
	}

	// The predict timeout turns into 504.
	block := predictFunc(func(ctx context.Context, _ map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	_, ts = newHTTP(t, &Model{Name: "m", Signature: sig, Predictor: block}, HandlerOptions{PredictTimeout: 10 * time.Millisecond})
	r = doHTTP(t, ts, "POST", "/v2/models/m/infer", nil, []byte(body))
	if r.status != 504 {
		t.Errorf("predict past its timeout = %d %s, want 504", r.status, r.body)
	}
}

type nopStreamer struct{}

func (nopStreamer) Stream(context.Context, map[string]tensor.Tensor, func(map[string]tensor.Tensor) error) error {
	return nil
}

// TestHTTPClientDisconnectCancelsPredict checks that a client that leaves
// cancels the predict it was waiting for.
func TestHTTPClientDisconnectCancelsPredict(t *testing.T) {
	started, stopped := make(chan struct{}), make(chan error, 1)
	block := predictFunc(func(ctx context.Context, _ map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		close(started)
		<-ctx.Done()
		stopped <- ctx.Err()
		return nil, ctx.Err()
	})
	sig := engine.Signature{Inputs: []engine.TensorSpec{{Name: "x", DType: tensor.Float32, Shape: []int64{1}}}}
	_, ts := newHTTP(t, &Model{Name: "m", Signature: sig, Predictor: block}, HandlerOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reqCtx, leave := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(reqCtx, "POST", ts.URL+"/v2/models/m/infer",
		strings.NewReader(`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`))
	done := make(chan error, 1)
	go func() {
		resp, err := ts.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("predict never started")
	}
	leave()
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("predict's context ended with %v, want context.Canceled", err)
		}
	case <-ctx.Done():
		t.Fatal("predict was not cancelled when the client left")
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v", err)
	}
}
