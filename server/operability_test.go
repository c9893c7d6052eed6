package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelserver/modelserver/internal/syncbuf"

	"github.com/gorilla/websocket"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/auth"
	"github.com/modelserver/modelserver/tensor"
)

// doublerModel is doubler as an engine.Model, to run behind a Batcher.
type doublerModel struct{}

func (doublerModel) Signature() engine.Signature { return doublerSignature }
func (doublerModel) Close() error                { return nil }
func (doublerModel) Run(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	return doubler{}.Predict(ctx, in)
}

const predictBody = `{"x": [[1, 2]], "k": [1]}`

// jsonLines parses every line of a log as JSON.
func jsonLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func mustKeys(t *testing.T, keys ...string) *auth.Keys {
	t.Helper()
	k, err := auth.NewKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func request(t *testing.T, method, url, body string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestAPIKeysOnEveryRoute(t *testing.T) {
	extra := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "extra") })
	routes := map[string]http.Handler{"POST /v1/chat/completions": extra, "/v2/": extra}
	tests := []struct {
		method, path string
		open         bool // served without a key by default
	}{
		{"GET", "/", true},
		{"GET", "/v1/models/model", true},
		{"GET", "/v1/models/model/loaded", true},
		{"GET", "/v1/models/model:predict", true}, // Truss's readiness quirk
		{"GET", "/ping", true},
		{"GET", "/metrics", true},
		{"GET", "/v2/health/ready", true},
		{"GET", "/v1/models/model/schema", false},
		{"POST", "/v1/models/model:predict", false},
		{"POST", "/v1/models/model:predict_binary", false},
		{"POST", "/invocations", false},
		{"POST", "/v1/chat/completions", false},
		{"POST", "/v2/models/m/infer", false},
		{"GET", "/v2/models/m", false},
		{"GET", "/v1/websocket", false},
		{"GET", "/nonexistent", false},
		{"GET", "//metrics", false}, // redirected paths are not open
	}
	for _, allProtected := range []bool{false, true} {
		opts := Options{APIKeys: mustKeys(t, "secret-1", "secret-2"), Routes: routes}
		if allProtected {
			opts.OpenRoutes = []string{}
		}
		ts := newTestServer(t, true, opts)
		for _, tt := range tests {
			body := ""
			if tt.method == "POST" {
				body = predictBody
			}
			for _, auth := range []string{"", "Api-Key wrong", "Bearer secret-1", "Api-Key secret-2"} {
				h := http.Header{}
				if auth != "" {
					h.Set("Authorization", auth)
				}
				resp, got := request(t, tt.method, ts.URL+tt.path, body, h)
				valid := strings.HasSuffix(auth, "secret-1") || strings.HasSuffix(auth, "secret-2")
				want401 := !valid && (allProtected || !tt.open)
				if (resp.StatusCode == http.StatusUnauthorized) != want401 {
					t.Errorf("open routes default=%v: %s %s with %q: status %d %s, want 401: %v", !allProtected, tt.method, tt.path, auth, resp.StatusCode, got, want401)
				}
				if resp.StatusCode == http.StatusUnauthorized {
					if got != `{"error":"Unauthorized: missing or invalid API key."}` || resp.Header.Get("WWW-Authenticate") == "" ||
						resp.Header.Get(headerErrorCode) != codeClient {
						t.Errorf("%s %s: 401 answer %s, headers %v", tt.method, tt.path, got, resp.Header)
					}
				}
			}
		}
	}
}

func TestAPIKeysOnWebSocket(t *testing.T) {
	url := wsServer(t, Model{Signature: doublerSignature, Predictor: doubler{}}, Options{APIKeys: mustKeys(t, "k")})
	wsURL := "ws" + strings.TrimPrefix(url, "http") + "/v1/websocket"
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL, nil); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upgrade without a key: %v, %v; want 401", err, resp)
	}
	conn, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Authorization": {"Bearer k"}, "X-Request-Id": {"ws-id-1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "ws-id-1" {
		t.Errorf("upgrade answer X-Request-Id = %q, want the client's id", got)
	}
	if err := conn.WriteMessage(websocket.TextMessage, []byte(predictBody)); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := conn.ReadMessage(); err != nil || !strings.Contains(string(msg), `"y"`) {
		t.Errorf("answer %s, %v", msg, err)
	}
}

func TestRequestIDInLogsAndResponse(t *testing.T) {
	var logs syncbuf.Buffer
	b := batching.New(doublerModel{}, batching.WithMaxBatchSize(8))
	defer b.Close()
	s := New(Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), ModelName: "doubler"})
	s.SetReady(Model{Signature: doublerSignature, Predictor: b})
	url := newHTTPTestServer(t, s)

	resp, _ := request(t, "POST", url+"/v1/models/model:predict", predictBody, http.Header{"X-Baseten-Request-Id": {"client-id-42"}})
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") != "client-id-42" || resp.Header.Get("X-Baseten-Request-Id") != "client-id-42" {
		t.Fatalf("predict: %d, headers %v; want the client's id echoed", resp.StatusCode, resp.Header)
	}
	resp, _ = request(t, "POST", url+"/v1/models/model:predict", `{`, nil)
	generated := resp.Header.Get("X-Request-Id")
	if len(generated) != 36 || resp.Header.Get("X-Baseten-Request-Id") != "" {
		t.Fatalf("request without an id: headers %v, want a generated X-Request-Id only", resp.Header)
	}
	request(t, "GET", url+"/v1/models/model", "", nil)
	request(t, "GET", url+"/metrics", "", nil)

	byID := map[string]map[string]any{}
	for _, line := range jsonLines(t, logs.String()) {
		if line["msg"] == "Handled request" {
			id, _ := line["request_id"].(string)
			byID[id] = line
		}
	}
	if len(byID) != 2 {
		t.Errorf("access log has %d lines, want 2 (probes and /metrics left out): %v", len(byID), byID)
	}
	line := byID["client-id-42"]
	for key, want := range map[string]any{"level": "INFO", "model": "doubler", "route": "predict", "status": 200.0, "outcome": "ok", "batch_size": 1.0, "batch_requests": 1.0} {
		if line[key] != want {
			t.Errorf("access log %s = %v, want %v (line %v)", key, line[key], want, line)
		}
	}
	for _, key := range []string{"time", "duration", "queue_time"} {
		if _, ok := line[key]; !ok {
			t.Errorf("access log lacks %s: %v", key, line)
		}
	}
	if line := byID[generated]; line["status"] != 400.0 {
		t.Errorf("access log of the bad request: %v", line)
	}
}

func TestTraceParentContinues(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	b := batching.New(doublerModel{}, batching.WithMaxBatchSize(8))
	defer b.Close()
	s := New(Options{TracerProvider: tp})
	s.SetReady(Model{Signature: doublerSignature, Predictor: b})
	url := newHTTPTestServer(t, s)

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	resp, _ := request(t, "POST", url+"/v1/models/model:predict", predictBody,
		http.Header{"Traceparent": {"00-" + traceID + "-" + parentID + "-01"}, "Tracestate": {"vendor=x"}})
	if resp.StatusCode != 200 {
		t.Fatalf("predict: %d", resp.StatusCode)
	}
	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range rec.Ended() {
		spans[sp.Name()] = sp
	}
	server, ok := spans["POST predict"]
	if !ok {
		t.Fatalf("no server span among %v", spanNames(rec.Ended()))
	}
	if got := server.SpanContext().TraceID().String(); got != traceID {
		t.Errorf("server span trace %s, want the client's %s", got, traceID)
	}
	if got := server.Parent().SpanID().String(); got != parentID || !server.Parent().IsRemote() {
		t.Errorf("server span parent %s (remote %v), want the client's %s", got, server.Parent().IsRemote(), parentID)
	}
	if got := server.SpanContext().TraceState().Get("vendor"); got != "x" {
		t.Errorf("tracestate vendor = %q, want x", got)
	}
	for _, name := range []string{"queue", "execute"} {
		child, ok := spans[name]
		if !ok {
			t.Errorf("no %s span among %v", name, spanNames(rec.Ended()))
			continue
		}
		if child.Parent().SpanID() != server.SpanContext().SpanID() {
			t.Errorf("%s span's parent is %s, want the server span %s", name, child.Parent().SpanID(), server.SpanContext().SpanID())
		}
	}
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name())
	}
	return names
}

// TestShutdownDrains: once draining, readiness and new requests answer 503,
// an HTTP predict and a WebSocket message in flight are answered, and the
// WebSocket is then closed with 1001.
func TestShutdownDrains(t *testing.T) {
	model := &heldModel{release: make(chan struct{})}
	b := batching.New(model, batching.WithMaxBatchSize(0), batching.WithPredictConcurrency(2))
	defer b.Close()
	s := New(Options{})
	s.SetReady(Model{Signature: doublerSignature, Predictor: b})
	url := newHTTPTestServer(t, s)
	ws := dialWS(t, url)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(predictBody)); err != nil {
		t.Fatal(err)
	}
	httpDone := make(chan int, 1)
	go func() {
		resp, err := http.Post(url+"/v1/models/model:predict", "application/json", strings.NewReader(predictBody))
		if err != nil {
			httpDone <- 0
			return
		}
		resp.Body.Close()
		httpDone <- resp.StatusCode
	}()
	waitFor(t, func() bool { return model.runs.Load() == 2 }) // both accepted and running

	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- s.Shutdown(context.Background()) }()
	waitFor(t, func() bool {
		resp, _ := request(t, "GET", url+"/v1/models/model", "", nil)
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if resp, body := request(t, "POST", url+"/v1/models/model:predict", predictBody, nil); resp.StatusCode != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("new predict while draining: %d %s, want 503", resp.StatusCode, body)
	}
	if resp, _ := request(t, "GET", url+"/", "", nil); resp.StatusCode != 200 {
		t.Errorf("liveness while draining: %d, want 200", resp.StatusCode)
	}
	close(model.release)
	if code := <-httpDone; code != 200 {
		t.Errorf("predict in flight: %d, want 200", code)
	}
	if _, msg, err := ws.ReadMessage(); err != nil || !strings.Contains(string(msg), `"y"`) {
		t.Errorf("WebSocket message in flight: %s, %v", msg, err)
	}
	_, _, err := ws.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("after draining the WebSocket ends with %v, want close 1001", err)
	}
	if err := <-shutdownErr; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

// TestShutdownGraceCancels: past the grace period, requests in flight end
// with an explicit shutting-down answer.
func TestShutdownGraceCancels(t *testing.T) {
	model := &heldModel{release: make(chan struct{})}
	defer close(model.release)
	b := batching.New(model, batching.WithMaxBatchSize(0), batching.WithPredictConcurrency(1))
	defer b.Close()
	s := New(Options{})
	s.SetReady(Model{Signature: doublerSignature, Predictor: b})
	url := newHTTPTestServer(t, s)
	ws := dialWS(t, url)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(predictBody)); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		status int
		body   string
	}
	answers := make(chan answer, 2)
	for range 2 { // one runs, one waits in the queue
		go func() {
			resp, err := http.Post(url+"/v1/models/model:predict", "application/json", strings.NewReader(predictBody))
			if err != nil {
				answers <- answer{0, err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			answers <- answer{resp.StatusCode, string(b)}
		}()
	}
	waitFor(t, func() bool { return model.runs.Load() >= 1 })
	time.Sleep(50 * time.Millisecond) // let the other requests queue

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the grace period's deadline", err)
	}
	for range 2 {
		a := <-answers
		if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "shutting down") {
			t.Errorf("predict past the grace period: %d %s, want 503 shutting down", a.status, a.body)
		}
	}
	_, _, err := ws.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("WebSocket past the grace period ends with %v, want close 1001", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkMiddleware measures what every request pays for the middleware
// (request id, trace context, API key check, shutdown binding, metrics,
// access log to a discarding logger) on top of a trivial route.
func BenchmarkMiddleware(b *testing.B) {
	for _, withKeys := range []bool{false, true} {
		b.Run(fmt.Sprintf("keys=%v", withKeys), func(b *testing.B) {
			opts := Options{Logger: slog.New(slog.DiscardHandler)}
			if withKeys {
				keys, err := auth.NewKeys([]string{"k1", "k2", "k3"})
				if err != nil {
					b.Fatal(err)
				}
				opts.APIKeys = keys
			}
			s := New(opts)
			s.SetReady(Model{Signature: doublerSignature, Predictor: doubler{}})
			h := s.Handler()
			req := httptest.NewRequest("GET", "/v1/models/model/schema", nil)
			req.Header.Set("Authorization", "Bearer k3")
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

func TestCheckRoutePatterns(t *testing.T) {
	tests := []struct {
		patterns []string
		ok       bool
	}{
		{DefaultOpenRoutes, true},
		{nil, true},
		{[]string{"GET /{"}, false},
		{[]string{"GET /a", "GET /a"}, false},
		{[]string{"BAD PATTERN WITH SPACES"}, false},
	}
	for _, tt := range tests {
		if err := CheckRoutePatterns(tt.patterns); (err == nil) != tt.ok {
			t.Errorf("CheckRoutePatterns(%q) = %v, want ok %v", tt.patterns, err, tt.ok)
		}
	}
}

// TestShutdownStreams: a stream in flight when draining starts runs to its
// end; past the grace period a stream is cut off, so its client sees an
// incomplete body rather than a complete answer.
func TestShutdownStreams(t *testing.T) {
	st := newStepper(true)
	s, url := newStreamServer(t, st, Options{})
	finishing := streamRequest(t, url, "", `{"x": [[1, 2]], "k": [2]}`)
	lines := bufio.NewReader(finishing.Body)
	if _, err := lines.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	s.SetClosing()
	st.gate <- struct{}{}
	rest, err := io.ReadAll(lines)
	if err != nil || strings.Count(string(rest), "\n") != 1 {
		t.Errorf("stream in flight while draining: %q, %v; want its last chunk", rest, err)
	}
	<-st.done

	st2 := newStepper(true)
	s2, url2 := newStreamServer(t, st2, Options{})
	cut := streamRequest(t, url2, "", `{"x": [[1, 2]], "k": [5]}`)
	lines = bufio.NewReader(cut.Body)
	if _, err := lines.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	s2.Cancel() // what the command does when the grace period is over
	if _, err := io.ReadAll(lines); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("stream past the grace period: %v, want a cut-off body", err)
	}
	<-st2.done
	if err := st2.lastErr(); !errors.Is(err, context.Canceled) {
		t.Errorf("producer stopped with %v, want its context cancelled", err)
	}
}

// TestRefusedRequestsKeepTheirRoute: a request refused before routing (no
// key) is counted under the route it asked for.
func TestRefusedRequestsKeepTheirRoute(t *testing.T) {
	s := New(Options{APIKeys: mustKeys(t, "secret")})
	s.SetReady(Model{Signature: doublerSignature, Predictor: doubler{}})
	url := newHTTPTestServer(t, s)
	tests := []struct{ path, route string }{
		{"/v1/models/model:predict", "/v1/models/"},
		{"/invocations", "/invocations"},
	}
	for _, tt := range tests {
		resp, _ := request(t, "POST", url+tt.path, predictBody, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("POST %s without a key: status %d, want 401", tt.path, resp.StatusCode)
		}
		if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues(tt.route, "401", "unauthenticated")); got != 1 {
			t.Errorf("POST %s: requests{route=%q,status=401} = %v, want 1", tt.path, tt.route, got)
		}
	}
}
