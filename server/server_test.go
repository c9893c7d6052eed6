package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/codec"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/auth"
	"github.com/modelserver/modelserver/tensor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// doubler is a fake model: y = 2x (float32 [batch, 2]), s = k + 1 (int64
// [batch]); k[0] == 99 makes it fail like a runtime error.
type doubler struct{}

var doublerSignature = engine.Signature{
	Inputs: []engine.TensorSpec{
		{Name: "x", DType: tensor.Float32, Shape: []int64{-1, 2}, DimNames: []string{"batch", ""}},
		{Name: "k", DType: tensor.Int64, Shape: []int64{-1}, DimNames: []string{"batch"}},
	},
	Outputs: []engine.TensorSpec{
		{Name: "y", DType: tensor.Float32, Shape: []int64{-1, 2}, DimNames: []string{"batch", ""}},
		{Name: "s", DType: tensor.Int64, Shape: []int64{-1}, DimNames: []string{"batch"}},
	},
}

func (doubler) Predict(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	x, k := in["x"], in["k"]
	y := make([]byte, len(x.Data))
	for i := 0; i < len(y); i += 4 {
		v := math.Float32frombits(binary.LittleEndian.Uint32(x.Data[i:]))
		binary.LittleEndian.PutUint32(y[i:], math.Float32bits(2*v))
	}
	s := make([]byte, len(k.Data))
	for i := 0; i < len(s); i += 8 {
		v := int64(binary.LittleEndian.Uint64(k.Data[i:]))
		if v == 99 {
			return nil, fmt.Errorf("%w: Non-zero status code returned while running Mul node", engine.ErrRuntime)
		}
		binary.LittleEndian.PutUint64(s[i:], uint64(v+1))
	}
	return map[string]tensor.Tensor{
		"y": {DType: tensor.Float32, Shape: x.Shape, Data: y},
		"s": {DType: tensor.Int64, Shape: k.Shape, Data: s},
	}, ctx.Err()
}

func newTestServer(t *testing.T, ready bool, opts Options) *httptest.Server {
	t.Helper()
	s := New(opts)
	if ready {
		s.SetReady(Model{Signature: doublerSignature, Predictor: doubler{}})
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func newHTTPTestServer(t *testing.T, s *Server) string {
	t.Helper()
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

type response struct {
	status  int
	body    string
	headers http.Header
}

func do(t *testing.T, ts *httptest.Server, method, path, contentType string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
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
	return response{resp.StatusCode, string(b), resp.Header}
}

func TestRoutesWhileLoading(t *testing.T) {
	ts := newTestServer(t, false, Options{})
	notReady := `{"error":"Model with name model is not ready."}`
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/", 200, "true"},
		{"GET", "/v1/models/model", 503, notReady},
		{"GET", "/v1/models/anything", 503, notReady},
		{"GET", "/v1/models/model/loaded", 503, notReady},
		{"GET", "/v1/models/model:predict", 503, notReady},
		{"POST", "/v1/models/model:predict", 503, notReady},
		{"GET", "/v1/models/model/schema", 503, notReady},
	}
	for _, tt := range tests {
		got := do(t, ts, tt.method, tt.path, "", nil)
		if got.status != tt.status || got.body != tt.body {
			t.Errorf("%s %s = %d %s, want %d %s", tt.method, tt.path, got.status, got.body, tt.status, tt.body)
		}
		if tt.status == 503 && (got.headers.Get("X-BASETEN-ERROR-SOURCE") != "04" || got.headers.Get("X-BASETEN-ERROR-CODE") != "600") {
			t.Errorf("%s %s: error headers %v, want source 04 code 600", tt.method, tt.path, got.headers)
		}
	}
}

func TestRoutesWhenReady(t *testing.T) {
	ts := newTestServer(t, true, Options{})
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/", 200, "true"},
		{"GET", "/v1/models/model", 200, "{}"},
		{"GET", "/v1/models/model/loaded", 200, "{}"},
		{"GET", "/v1/models/model:predict", 200, "{}"},
		{"GET", "/v1/models/model:predict_binary", 200, "{}"},
		{"GET", "/ping", 200, "{}"},
		{"GET", "/nope", 404, `{"detail":"Not Found"}`},
		{"GET", "/v1/models/model/other", 404, `{"detail":"Not Found"}`},
		{"POST", "/", 405, `{"detail":"Method Not Allowed"}`},
		{"POST", "/v1/models/model", 405, `{"detail":"Method Not Allowed"}`},
		{"DELETE", "/v1/models/model/schema", 405, `{"detail":"Method Not Allowed"}`},
	}
	for _, tt := range tests {
		got := do(t, ts, tt.method, tt.path, "", nil)
		if got.status != tt.status || got.body != tt.body {
			t.Errorf("%s %s = %d %s, want %d %s", tt.method, tt.path, got.status, got.body, tt.status, tt.body)
		}
	}
}

func TestSchema(t *testing.T) {
	ts := newTestServer(t, true, Options{})
	got := do(t, ts, "GET", "/v1/models/model/schema", "", nil)
	if got.status != 200 {
		t.Fatalf("schema status %d: %s", got.status, got.body)
	}
	var schema struct {
		Input struct {
			Properties map[string]struct {
				DType string `json:"dtype"`
				Shape []any  `json:"shape"`
			} `json:"properties"`
			Required []string `json:"required"`
		} `json:"input_schema"`
		Streaming *bool `json:"supports_streaming"`
	}
	if err := json.Unmarshal([]byte(got.body), &schema); err != nil {
		t.Fatal(err)
	}
	x := schema.Input.Properties["x"]
	if x.DType != "float32" || !cmp.Equal(x.Shape, []any{"batch", 2.0}) {
		t.Errorf("schema of x = %+v, want float32 [batch 2]", x)
	}
	if !cmp.Equal(schema.Input.Required, []string{"x", "k"}) || schema.Streaming == nil || *schema.Streaming {
		t.Errorf("schema = %s", got.body)
	}
}

func TestPredictJSONLists(t *testing.T) {
	ts := newTestServer(t, true, Options{})
	for _, path := range []string{"/v1/models/model:predict", "/v1/models/other:predict_binary", "/invocations"} {
		got := do(t, ts, "POST", path, "application/json", []byte(`{"x": [[1, 2.5], [-3, 0]], "k": [1, 2]}`))
		if got.status != 200 {
			t.Fatalf("POST %s = %d %s", path, got.status, got.body)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(got.body), &out); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"y": []any{[]any{2.0, 5.0}, []any{-6.0, 0.0}}, "s": []any{2.0, 3.0}}
		if !cmp.Equal(out, want) {
			t.Errorf("POST %s = %v, want %v", path, out, want)
		}
		if got.headers.Get("Content-Type") != "application/json" || got.headers.Get("Content-Length") == "" {
			t.Errorf("POST %s headers %v", path, got.headers)
		}
	}
}

func TestPredictMsgpack(t *testing.T) {
	ts := newTestServer(t, true, Options{})
	x := tensor.Tensor{DType: tensor.Float32, Shape: []int64{1, 2}, Data: f32bytes(1.5, -2)}
	k := tensor.Tensor{DType: tensor.Int64, Shape: []int64{1}, Data: []byte{7, 0, 0, 0, 0, 0, 0, 0}}
	body, err := codec.EncodeTensors(map[string]tensor.Tensor{"x": x, "k": k}, []string{"x", "k"}, codec.FormatMsgpack)
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range []string{"application/octet-stream", "Application/Octet-Stream", "application/octet-stream; charset=binary"} {
		got := do(t, ts, "POST", "/v1/models/model:predict", ct, body)
		if got.status != 200 {
			t.Fatalf("Content-Type %q: %d %s", ct, got.status, got.body)
		}
		if got.headers.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("Content-Type %q answered %q", ct, got.headers.Get("Content-Type"))
		}
		out, format, err := codec.DecodeTensors([]byte(got.body), true, doublerOutputDType)
		if err != nil || format != codec.FormatMsgpack {
			t.Fatalf("decoding answer: %v, format %v", err, format)
		}
		if !bytes.Equal(out["y"].Data, f32bytes(3, -4)) || !bytes.Equal(out["s"].Data, []byte{8, 0, 0, 0, 0, 0, 0, 0}) {
			t.Errorf("answer %+v", out)
		}
	}
}

func TestPredictNumpyArrayField(t *testing.T) {
	ts := newTestServer(t, true, Options{})
	body := `{"x": {"data_b64": "AADAPwAAAMA=", "shape": [1, 2], "dtype": "float32"}, "k": [5]}`
	got := do(t, ts, "POST", "/v1/models/model:predict", "", []byte(body))
	if got.status != 200 {
		t.Fatalf("%d %s", got.status, got.body)
	}
	var out map[string]struct {
		Data  string  `json:"data_b64"`
		Shape []int64 `json:"shape"`
		DType string  `json:"dtype"`
	}
	if err := json.Unmarshal([]byte(got.body), &out); err != nil {
		t.Fatal(err)
	}
	if y := out["y"]; y.Data != "AABAQAAAgMA=" || y.DType != "float32" || !cmp.Equal(y.Shape, []int64{1, 2}) {
		t.Errorf("y = %+v, want 3, -4 as float32 (1, 2)", y)
	}
}

func TestPredictErrors(t *testing.T) {
	ts := newTestServer(t, true, Options{MaxRequestBytes: 1024})
	tests := []struct {
		name, contentType, body string
		status                  int
		code                    string
		message                 string
	}{
		{"malformed JSON", "", `{"x": [1,`, 400, "700", "Invalid JSON payload"},
		{"malformed msgpack", "application/octet-stream", "\xc1", 400, "700", "Invalid msgpack payload"},
		{"unknown input", "", `{"x": [[1, 2]], "k": [1], "z": [1]}`, 400, "700", `"z"`},
		{"missing input", "", `{"x": [[1, 2]]}`, 400, "700", `missing input "k"`},
		{"rank mismatch", "", `{"x": [1, 2], "k": [1]}`, 400, "700", `input "x"`},
		{"fixed dim mismatch", "", `{"x": [[1, 2, 3]], "k": [1]}`, 400, "700", "expected shape (?, 2), received (1, 3)"},
		{"dtype mismatch", "", `{"x": {"data_b64": "AAAAAAAAAAA=", "shape": [1, 2], "dtype": "int32"}, "k": [1]}`, 400, "700", "expected dtype float32, received int32"},
		{"data length mismatch", "", `{"x": {"data_b64": "AAAAAA==", "shape": [1, 2], "dtype": "float32"}, "k": [1]}`, 400, "700", `"x"`},
		{"body too large", "", `{"x": [[` + strings.Repeat("1,", 600) + `1]], "k": [1]}`, 413, "700", "limit is 1024 bytes"},
		{"runtime failure", "", `{"x": [[1, 2]], "k": [99]}`, 500, "600", "model execution failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := do(t, ts, "POST", "/v1/models/model:predict", tt.contentType, []byte(tt.body))
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(got.body), &e); err != nil {
				t.Fatalf("body %q is not a Truss error: %v", got.body, err)
			}
			if got.status != tt.status || got.headers.Get("X-BASETEN-ERROR-CODE") != tt.code || !strings.Contains(e.Error, tt.message) {
				t.Errorf("= %d code %s %q, want %d code %s containing %q", got.status, got.headers.Get("X-BASETEN-ERROR-CODE"), e.Error, tt.status, tt.code, tt.message)
			}
		})
	}
	// The server keeps serving after each of these.
	if got := do(t, ts, "POST", "/v1/models/model:predict", "", []byte(`{"x": [[1, 2]], "k": [1]}`)); got.status != 200 {
		t.Errorf("predict after errors = %d %s", got.status, got.body)
	}
}

func TestBodyLimitWithoutContentLength(t *testing.T) {
	ts := newTestServer(t, true, Options{MaxRequestBytes: 64})
	req, err := http.NewRequest("POST", ts.URL+"/v1/models/model:predict", io.MultiReader(strings.NewReader(strings.Repeat(" ", 100)), strings.NewReader(`{}`)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1 // chunked: the limit must hold while reading
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body over the limit = %d, want 413", resp.StatusCode)
	}
}

func TestHTTPErrorMapping(t *testing.T) {
	tests := []struct {
		err     error
		status  int
		code    string
		outcome string
	}{
		{fmt.Errorf("x: %w", auth.ErrUnauthenticated), 401, "700", "unauthenticated"},
		{errNotReady, 503, "600", "not_ready"},
		{errShuttingDown, 503, "600", "not_ready"},
		{batching.ErrClosed, 503, "600", "not_ready"},
		{errBodyTooLarge, 413, "700", "too_large"},
		{errClientGone, 499, "600", "cancelled"},
		{fmt.Errorf("%w: bad", codec.ErrMalformed), 400, "700", "invalid_input"},
		{fmt.Errorf("%w: bad", engine.ErrInvalidInput), 400, "700", "invalid_input"},
		{batching.ErrQueueFull, 429, "600", "queue_full"},
		{fmt.Errorf("x: %w", batching.ErrQueueTimeout), 429, "600", "queue_timeout"},
		{context.Canceled, 499, "600", "cancelled"},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), 504, "600", "deadline"},
		{errStreamStalled, 504, "600", "deadline"},
		{fmt.Errorf("%w: boom", engine.ErrRuntime), 500, "600", "model_error"},
		{errors.New("surprise"), 500, "500", "error"},
	}
	for _, tt := range tests {
		got := httpError(tt.err, 1)
		if got.status != tt.status || got.code != tt.code || got.outcome != tt.outcome || got.message == "" {
			t.Errorf("httpError(%v) = %d %s %s %q, want %d %s %s", tt.err, got.status, got.code, got.outcome, got.message, tt.status, tt.code, tt.outcome)
		}
	}
}

func TestMetrics(t *testing.T) {
	ts := newTestServer(t, true, Options{})
	do(t, ts, "POST", "/v1/models/model:predict", "", []byte(`{"x": [[1, 2]], "k": [1]}`))
	do(t, ts, "POST", "/v1/models/model:predict", "", []byte(`{`))
	got := do(t, ts, "GET", "/metrics", "", nil)
	for _, want := range []string{
		`modelserver_http_requests_total{code="200",outcome="ok",route="predict"} 1`,
		`modelserver_http_requests_total{code="400",outcome="invalid_input",route="predict"} 1`,
		`modelserver_model_ready 1`,
		`modelserver_http_request_duration_seconds_count{route="predict"} 2`,
	} {
		if !strings.Contains(got.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestIsBinary(t *testing.T) {
	tests := map[string]bool{
		"application/octet-stream":                 true,
		"Application/Octet-Stream":                 true,
		"application/octet-stream; charset=binary": true,
		" application/octet-stream ;x=y":           true,
		"application/json":                         false,
		"":                                         false,
		"application/octet-streamx":                false,
		"text/plain; application/octet-stream":     false,
	}
	for ct, want := range tests {
		if got := isBinary(ct); got != want {
			t.Errorf("isBinary(%q) = %v, want %v", ct, got, want)
		}
	}
}

func f32bytes(vs ...float32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func doublerOutputDType(name string) (tensor.DType, bool) {
	for _, o := range doublerSignature.Outputs {
		if o.Name == name {
			return o.DType, true
		}
	}
	return tensor.Invalid, false
}
