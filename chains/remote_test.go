package chains_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserver/modelserver/chains"
	"github.com/modelserver/modelserver/codec"
	"github.com/modelserver/modelserver/tensor"
)

func TestRemoteBinaryNDArrayAndHeaders(t *testing.T) {
	eps := servedChain(t, []any{&Top{}, &Mid{}, &Leaf{}}, nil, "")
	top := client[MidInput, LeafOutput](t, "Top", eps["Top"], chains.DepOptions{})
	ctx := chains.WithForwardedHeaders(testContext(t), http.Header{
		"Traceparent":                {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		"X-Baseten-Request-Id":       {"req-1"},
		"X-Baseten-Chain-Request-Id": {"chain-1"},
		"X-Other":                    {"not forwarded"},
	})
	got, err := top.RunRemote(ctx, MidInput{Value: 21, Array: float32s(1.5, -2, 3)})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]float32{3, -4, 6}, floatsOf(got.Doubled)); diff != "" {
		t.Errorf("doubled (-want +got):\n%s", diff)
	}
	if got.Value != 42 || got.RequestID != "req-1" || got.ChainRequestID != "chain-1" || !strings.HasPrefix(got.TraceParent, "00-0af7") {
		t.Errorf("got %+v, want value 42 and the three forwarded headers", got)
	}
}

func TestRemoteJSONBody(t *testing.T) {
	eps := servedChain(t, []any{&Top{}, &Mid{}, &Leaf{}}, nil, "")
	body := `{"value": 1, "array": {"data_b64": "AACAPwAAAEA=", "shape": [2], "dtype": "float32"}}`
	resp, err := http.Post(eps["Top"].URL, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := readAll(t, resp.Body)
	want := `{"chain_request_id":"","doubled":{"data_b64":"AAAAQAAAgEA=","shape":[2],"dtype":"float32"},"request_id":"","traceparent":"","value":2}`
	if resp.StatusCode != 200 || got != want || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("POST = %d %s %q, want 200 application/json %q", resp.StatusCode, resp.Header.Get("Content-Type"), got, want)
	}
}

func TestRemoteBinaryRequestGetsMsgpack(t *testing.T) {
	eps := servedChain(t, []any{&Top{}, &Mid{}, &Leaf{}}, nil, "")
	body, err := codec.EncodeMsgpack(map[string]any{"value": int64(3), "array": float32s(1, 2)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(eps["Mid"].URL, "Application/Octet-Stream; charset=binary", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := codec.DecodeMsgpack([]byte(readAll(t, resp.Body)))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := got.(map[string]any)
	arr, _ := m["doubled"].(tensor.Tensor)
	if resp.Header.Get("Content-Type") != "application/octet-stream" || m["value"] != int64(6) || !slices.Equal(floatsOf(arr), []float32{2, 4}) {
		t.Errorf("answer %s %#v, want msgpack with value 6 and doubled [2 4]", resp.Header.Get("Content-Type"), got)
	}
}

func TestRemoteRetriesTransientFailures(t *testing.T) {
	leaf := &Leaf{FailFirst: 2}
	eps := servedChain(t, []any{&Top{}, &Mid{}, leaf}, nil, "")
	top := client[MidInput, LeafOutput](t, "Top", eps["Top"], chains.DepOptions{})
	got, err := top.RunRemote(testContext(t), MidInput{Value: 5, Array: float32s(1), Fail: "transient"})
	if err != nil {
		t.Fatalf("RunRemote with 2 transient failures and 3 attempts: %v", err)
	}
	if got.Value != 10 || leaf.calls.Load() != 3 {
		t.Errorf("value %d after %d Leaf calls, want 10 after 3", got.Value, leaf.calls.Load())
	}
	metrics := get(t, strings.TrimSuffix(eps["Mid"].URL, chains.PredictPath)+"/metrics")
	if !strings.Contains(metrics, `dependency_chainlet_requests_total{dependency_chainlet="Leaf"} 3`) {
		t.Errorf("Mid's /metrics lacks 3 requests to Leaf:\n%s", metrics)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return readAll(t, resp.Body)
}

// wantTree is the nested traceback Truss prints for a root error in Leaf,
// seen from a client of Top.
var wantTree = regexp.MustCompile(`(?s)^\(showing chained remote errors, root error at the bottom\)
├─ Error calling dependency Chainlet ` + "`Top`" + `, HTTP status=500, trace ID=` + "``" + `\.
│   Chainlet-Traceback \(most recent call last\):
│     File ".*testchain_test\.go", line \d+, in \(\*Top\)\.RunRemote
│       return t\.Mid\.RunRemote\(ctx, in\)
│   ValueError: \(showing chained remote errors, root error at the bottom\)
│   ├─ Error calling dependency Chainlet ` + "`Mid`" + `, HTTP status=500, trace ID=` + "``" + `\.
│   │   Chainlet-Traceback \(most recent call last\):
│   │     File ".*testchain_test\.go", line \d+, in \(\*Mid\)\.RunRemote
│   │       return m\.Leaf\.RunRemote\(ctx, LeafInput\(in\)\)
│   │   ValueError: \(showing chained remote errors, root error at the bottom\)
│   │   ├─ Error calling dependency Chainlet ` + "`Leaf`" + `, HTTP status=500, trace ID=` + "``" + `\.
│   │   │   Chainlet-Traceback \(most recent call last\):
│   │   │     File ".*testchain_test\.go", line \d+, in \(\*Leaf\)\.RunRemote
│   │   │       return LeafOutput\{\}, checkValue\(in\.Value\)
│   │   │     File ".*testchain_test\.go", line \d+, in checkValue
│   │   │       return chains\.ValueError\("value %d is too large", v\)
│   │   │   ValueError: value 7 is too large
│   │   ╰   \(Exception class defined in ` + "`builtins`" + `\.\)
│   ╰   \(Exception class defined in ` + "`builtins`" + `\.\)
╰   \(Exception class defined in ` + "`builtins`" + `\.\)$`)

func TestRemoteErrorThreeLevelsDown(t *testing.T) {
	leaf := &Leaf{}
	eps := servedChain(t, []any{&Top{}, &Mid{}, leaf}, nil, "")
	top := client[MidInput, LeafOutput](t, "Top", eps["Top"], chains.DepOptions{})
	_, err := top.RunRemote(testContext(t), MidInput{Value: 7, Array: float32s(1), Fail: "value"})
	var re *chains.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T), want a *RemoteError", err, err)
	}
	if !wantTree.MatchString(err.Error()) {
		t.Errorf("error message:\n%s\ndoes not match the nested Chainlet-Traceback\n%s", err, wantTree)
	}
	var names []string
	for e := re; e != nil; {
		names = append(names, fmt.Sprintf("%s:%d:%s", e.Chainlet, e.Status, e.ClassName()))
		next, _ := e.Unwrap().(*chains.RemoteError)
		e = next
	}
	if want := []string{"Top:500:ValueError", "Mid:500:ValueError", "Leaf:500:ValueError"}; !slices.Equal(names, want) {
		t.Errorf("error chain %v, want %v", names, want)
	}
	root := re.Root()
	if root.Detail.ExceptionMessage != "value 7 is too large" || len(root.Detail.UserStackTrace) != 2 || root.Detail.UserStackTrace[1].Name != "checkValue" {
		t.Errorf("root detail %+v, want the ValueError with frames RunRemote → checkValue", root.Detail)
	}
	if leaf.calls.Load() != 3 {
		t.Errorf("Leaf called %d times, want 3 (Truss retries every error)", leaf.calls.Load())
	}
}

func TestRemoteErrorBodies(t *testing.T) {
	eps := servedChain(t, []any{&Top{}, &Mid{}, &Leaf{}}, nil, "")
	tests := []struct {
		name, fail    string
		status        int
		cls, module   string
		msg           *regexp.Regexp
		framesAtLeast int
	}{
		{"plain Go error", "plain", 500, "errorString", "errors", regexp.MustCompile(`^plain Go error$`), 0},
		{"panic", "panic", 500, "RuntimeError", "builtins", regexp.MustCompile(`^panic: assignment to entry in nil map$`), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"value": 1, "array": []float32{1}, "fail": tt.fail})
			resp, err := http.Post(eps["Leaf"].URL, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct {
				Error chains.RemoteErrorDetail `json:"error"`
			}
			raw := readAll(t, resp.Body)
			if err := json.Unmarshal([]byte(raw), &got); err != nil {
				t.Fatalf("body %q: %v", raw, err)
			}
			d := got.Error
			if resp.StatusCode != tt.status || resp.Header.Get("X-Baseten-Error-Source") != "04" || resp.Header.Get("X-Baseten-Error-Code") != "600" ||
				d.ExceptionClsName != tt.cls || d.ExceptionModuleName == nil || *d.ExceptionModuleName != tt.module ||
				!tt.msg.MatchString(d.ExceptionMessage) || len(d.UserStackTrace) < tt.framesAtLeast {
				t.Errorf("answer %d %v %s, want %d with %s.%s %q and ≥%d frames", resp.StatusCode, resp.Header, raw, tt.status, tt.module, tt.cls, tt.msg, tt.framesAtLeast)
			}
		})
	}
}

func TestRemoteBadInputIs400(t *testing.T) {
	eps := servedChain(t, []any{&Top{}, &Mid{}, &Leaf{}}, nil, "")
	resp, err := http.Post(eps["Leaf"].URL, "application/json", strings.NewReader(`{"value": "seven"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := readAll(t, resp.Body)
	want := `{"error":"Input Parsing Error: value: cannot use string \"seven\" as int"}`
	if resp.StatusCode != 400 || got != want {
		t.Errorf("POST = %d %s, want 400 %s", resp.StatusCode, got, want)
	}
}

// Proxy calls a model Chainlet, which the tests fake with httptest.
type ProxyInput struct {
	Prompt string `json:"prompt"`
}

type Proxy struct {
	chains.Entrypoint
	Model chains.Dep[ProxyInput, string] `chains:"Model,retries=2,timeout=300ms,concurrency=2"`
}

func (p *Proxy) RunRemote(ctx context.Context, in ProxyInput) (string, error) {
	return p.Model.RunRemote(ctx, in)
}

// fakeModel serves handler as the model Chainlet and a Proxy in front of
// it, and returns a client of the Proxy.
func fakeModel(t *testing.T, handler http.HandlerFunc, host string) *chains.Dep[ProxyInput, string] {
	ts := httptest.NewServer(handler)
	t.Cleanup(ts.Close)
	model := chains.ModelChainlet{Name: "Model", Model: "phi3-tiny", LLM: true}
	eps := servedChain(t, []any{&Proxy{}, model}, map[string]chains.Endpoint{"Model": {URL: ts.URL + "/run_remote", Host: host}}, "secret-key")
	return client[ProxyInput, string](t, "Proxy", eps["Proxy"], chains.DepOptions{})
}

func TestRemoteSendsAPIKeyHostAndContentType(t *testing.T) {
	var got http.Header
	var gotHost, gotPath string
	proxy := fakeModel(t, func(w http.ResponseWriter, r *http.Request) {
		got, gotHost, gotPath = r.Header.Clone(), r.Host, r.URL.Path
		w.Write([]byte(`"ok"`))
	}, "chain-abc.api.example")
	ctx := chains.WithForwardedHeaders(testContext(t), http.Header{"X-Baseten-Request-Id": {"r-9"}})
	if _, err := proxy.RunRemote(ctx, ProxyInput{Prompt: "hi"}); err != nil {
		t.Fatal(err)
	}
	if got.Get("Authorization") != "Api-Key secret-key" || gotHost != "chain-abc.api.example" || gotPath != "/run_remote" ||
		got.Get("Content-Type") != "application/json" || got.Get("X-Baseten-Request-Id") != "r-9" || got.Get("Traceparent") != "" {
		t.Errorf("dependency saw host %q path %q headers %v", gotHost, gotPath, got)
	}
}

func TestRemoteLLMAnswerShapes(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"string", `"a poem"`, "a poem"},
		{"text field", `{"text": "a poem"}`, "a poem"},
		{"chat completion", `{"choices": [{"index": 0, "message": {"role": "assistant", "content": "a poem"}}]}`, "a poem"},
		{"completion", `{"choices": [{"text": "a poem"}]}`, "a poem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := fakeModel(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(tt.body)) }, "")
			got, err := proxy.RunRemote(testContext(t), ProxyInput{Prompt: "x"})
			if err != nil || got != tt.want {
				t.Errorf("RunRemote = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestRemotePlainTrussModelError(t *testing.T) {
	proxy := fakeModel(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(500)
		w.Write([]byte(`{"error":"Internal Server Error (in model/chainlet)."}`))
	}, "")
	_, err := proxy.RunRemote(testContext(t), ProxyInput{Prompt: "x"})
	want := "(showing chained remote errors, root error at the bottom)\n" +
		"├─ Error calling dependency Chainlet `Proxy`, HTTP status=500, trace ID=``.\n" +
		"│   Chainlet-Traceback (most recent call last):\n" +
		"│     File \""
	var re *chains.RemoteError
	if !errors.As(err, &re) || !strings.HasPrefix(err.Error(), want) || re.ClassName() != "GenericRemoteException" ||
		!strings.Contains(err.Error(), "GenericRemoteException: Error calling dependency Chainlet `Model`, HTTP status=500, trace ID=``.: 'Internal Server Error (in model/chainlet).'") {
		t.Errorf("error:\n%v\nwant a GenericRemoteException wrapping the model's plain error", err)
	}
}

func TestRemoteTimeoutIsRetried(t *testing.T) {
	var attempts atomic.Int64
	proxy := fakeModel(t, func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		io.Copy(io.Discard, r.Body) // the server notices a gone client once the body is read
		<-r.Context().Done()
	}, "")
	_, err := proxy.RunRemote(testContext(t), ProxyInput{Prompt: "x"})
	if !strings.Contains(err.Error(), "TimeoutError: chains: timeout calling remote Chainlet `Model` (0.3 seconds limit)") || attempts.Load() != 2 {
		t.Errorf("error after %d attempts:\n%v\nwant a TimeoutError after 2 attempts", attempts.Load(), err)
	}
}

func TestRemoteConcurrencyLimit(t *testing.T) {
	var inFlight, peak atomic.Int64
	release := make(chan struct{})
	proxy := fakeModel(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.Write([]byte(`"done"`))
	}, "")
	ctx := testContext(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Go(func() {
			_, err := proxy.RunRemote(ctx, ProxyInput{Prompt: "x"})
			errs <- err
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for peak.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // room for a third call to break the limit
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if peak.Load() != 2 {
		t.Errorf("peak calls in flight to the model = %d, want the limit 2", peak.Load())
	}
}

func TestHandlerTwiceSharesMetrics(t *testing.T) {
	c, err := chains.New(&Top{}, &Mid{}, &Leaf{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	opts := chains.ServeOptions{Chainlet: "Mid", Endpoints: map[string]chains.Endpoint{"Leaf": {URL: "http://127.0.0.1:1"}}, Registerer: reg}
	for range 2 {
		if _, err := c.Handler(opts); err != nil {
			t.Fatal(err)
		}
	}
}
