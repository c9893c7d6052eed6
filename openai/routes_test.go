package openai

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserver/modelserver/internal/shutdown"
	"github.com/modelserver/modelserver/llm"
)

// metricValue reads a counter, gauge or histogram count from reg; label
// is "name=value" or empty.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName()+"="+l.GetValue() == label {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return 0
}

func TestMetrics(t *testing.T) {
	ts := newTestServer(t, newFakeModel("abcd"))
	ts.post(t, "/v1/completions", `{"prompt":"xy","n":2,"stream":true}`)
	ts.post(t, "/v1/completions", `{"prompt":"xy","max_tokens":2}`)
	for _, tc := range []struct {
		name, label string
		want        float64
	}{
		{"modelserver_llm_prompt_tokens_total", "", 3 * 3},
		{"modelserver_llm_generation_tokens_total", "", 2*5 + 2},
		{"modelserver_llm_time_to_first_token_seconds", "", 3},
		{"modelserver_llm_inter_token_latency_seconds", "", 2*4 + 1},
		{"modelserver_llm_e2e_request_latency_seconds", "", 2},
		{"modelserver_llm_request_success_total", "finished_reason=stop", 2},
		{"modelserver_llm_request_success_total", "finished_reason=length", 1},
		{"modelserver_llm_request_success_total", "finished_reason=cancelled", 0},
		{"modelserver_llm_num_requests_running", "", 0},
		{"modelserver_llm_num_requests_waiting", "", 0},
		{"modelserver_llm_kv_slots_used", "", 0},
		{"modelserver_llm_kv_slots", "", 8},
	} {
		if got := metricValue(t, ts.reg, tc.name, tc.label); got != tc.want {
			t.Errorf("%s{%s} = %v, want %v", tc.name, tc.label, got, tc.want)
		}
	}
}

func TestModelsAndHealth(t *testing.T) {
	ts := newTestServer(t, newFakeModel("x"))
	resp, err := http.Get(ts.srv.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got := decode[modelList](t, string(body))
	want := modelList{Object: "list", Data: []modelCard{{ID: "fake-llm", Object: "model", Created: got.Data[0].Created, OwnedBy: "modelserver", MaxModelLen: 256}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/v1/models (-want +got):\n%s", diff)
	}
	resp, err = http.Get(ts.srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/health = %d, want 200", resp.StatusCode)
	}
}

func TestTokenize(t *testing.T) {
	ts := newTestServer(t, newFakeModel("x"))
	for _, tc := range []struct{ body, want string }{
		{`{"prompt":"ab"}`, `{"count":3,"max_model_len":256,"tokens":[1,100,101],"token_strs":null}`},
		{`{"model":"fake-llm","prompt":"ab","add_special_tokens":false,"return_token_strs":true}`, `{"count":2,"max_model_len":256,"tokens":[100,101],"token_strs":["a","b"]}`},
		{`{"prompt":""}`, `{"count":1,"max_model_len":256,"tokens":[1],"token_strs":null}`},
	} {
		resp, body := ts.post(t, "/tokenize", tc.body)
		if resp.StatusCode != 200 || string(body) != tc.want {
			t.Errorf("tokenize %s = %d %s, want %s", tc.body, resp.StatusCode, body, tc.want)
		}
	}
	for _, tc := range []struct{ body, want string }{
		{`{"messages":[{"role":"user","content":"a"}]}`, "<|user|>a<|end|><|assistant|>"},
		{`{"messages":[{"role":"user","content":"a"}],"add_generation_prompt":false,"add_special_tokens":true}`, "<s><|user|>a<|end|>"},
	} {
		resp, body := ts.post(t, "/tokenize", tc.body)
		got := decode[tokenizeResponse](t, string(body))
		if text := ts.model.Detokenize(got.Tokens, false); resp.StatusCode != 200 || text != tc.want || got.Count != len(got.Tokens) {
			t.Errorf("tokenize %s = %d %s (%q), want %q", tc.body, resp.StatusCode, body, text, tc.want)
		}
	}
	resp, body := ts.post(t, "/detokenize", `{"tokens":[1,100,101,2]}`)
	if resp.StatusCode != 200 || string(body) != `{"prompt":"<s>ab</s>"}` {
		t.Errorf("detokenize = %d %s", resp.StatusCode, body)
	}
}

func TestPredict(t *testing.T) {
	ts := newTestServer(t, newFakeModel("Hello"))
	for _, tc := range []struct {
		name        string
		body        string
		header      http.Header
		status      int
		contentType string
		want        string
	}{
		{"chat", `{"messages":[{"role":"user","content":"x"}]}`, nil, 200, "application/json", `"Hello"`},
		{"prompt", `{"prompt":"x","max_tokens":2}`, nil, 200, "application/json", `"He"`},
		{"model name ignored", `{"model":"model","prompt":"x","max_tokens":1}`, nil, 200, "application/json", `"H"`},
		{"n=2", `{"prompt":"x","n":2,"seed":3}`, nil, 200, "application/json", `["seed 3","seed 4"]`},
		{"stream", `{"prompt":"x","stream":true}`, nil, 200, "application/octet-stream", `Hello`},
		{"gathered", `{"prompt":"x","stream":true}`, http.Header{"Accept": {"application/json"}}, 200, "application/json", `"Hello"`},
		{"openai client streams", `{"prompt":"x","stream":true}`, http.Header{"Accept": {"application/json"}, "User-Agent": {"OpenAI/Python"}}, 200, "application/octet-stream", `Hello`},
		{"stream n=2", `{"prompt":"x","stream":true,"n":2}`, nil, 400, "application/json", `{"error":"A streamed predict makes one completion; n and the prompts must make one sequence."}`},
		{"neither", `{"max_tokens":2}`, nil, 400, "application/json", `{"error":"Send messages (a chat) or prompt (a completion)."}`},
		{"both", `{"prompt":"x","messages":[]}`, nil, 400, "application/json", `{"error":"Send either messages or prompt, not both."}`},
		{"invalid", `{"prompt":"x","temperature":-1}`, nil, 400, "application/json", `{"error":"temperature must be between 0 and 2, got -1."}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", ts.srv.URL+"/predict", strings.NewReader(tc.body))
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != tc.contentType || string(body) != tc.want {
				t.Errorf("= %d %q %s, want %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.contentType, tc.want)
			}
			if tc.status == 400 && (resp.Header.Get(headerErrorCode) != "700" || resp.Header.Get(headerErrorSource) != "04") {
				t.Errorf("error headers %v, want Truss's 04/700", resp.Header)
			}
			if tc.contentType == "application/octet-stream" && len(resp.TransferEncoding) == 0 {
				t.Errorf("streamed predict is not chunked")
			}
		})
	}
	ts.model.admitErr = llm.ErrQueueFull
	resp, body := ts.post(t, "/predict", `{"prompt":"x"}`)
	if resp.StatusCode != 429 || resp.Header.Get(headerErrorCode) != "600" {
		t.Errorf("queue full = %d %s (code %q), want 429 with code 600", resp.StatusCode, body, resp.Header.Get(headerErrorCode))
	}
}

func TestWebSocket(t *testing.T) {
	ts := newTestServer(t, newFakeModel("Hey"))
	url := "ws" + strings.TrimPrefix(ts.srv.URL, "http") + "/ws"
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	readAnswer := func() []string {
		var frames []string
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("reading: %v (after %q)", err, frames)
			}
			frames = append(frames, string(data))
			if strings.Contains(string(data), `"type":"done"`) || strings.Contains(string(data), `"type":"error"`) {
				return frames
			}
		}
	}
	promptLen := len("<|user|>x<|end|><|assistant|>")
	for range 2 { // two requests on one connection
		conn.WriteMessage(websocket.TextMessage, []byte(`{"messages":[{"role":"user","content":"x"}]}`))
		want := []string{
			`{"type":"delta","index":0,"text":"H"}`, `{"type":"delta","index":0,"text":"e"}`, `{"type":"delta","index":0,"text":"y"}`,
			fmt.Sprintf(`{"type":"done","finish_reasons":["stop"],"usage":{"prompt_tokens":%d,"completion_tokens":4,"total_tokens":%d}}`, promptLen, promptLen+4),
		}
		if diff := cmp.Diff(want, readAnswer()); diff != "" {
			t.Errorf("frames (-want +got):\n%s", diff)
		}
	}
	conn.WriteMessage(websocket.TextMessage, []byte(`{"prompt":"x","top_p":5}`))
	if got := readAnswer(); len(got) != 1 || !strings.Contains(got[0], `"param":"top_p"`) {
		t.Errorf("invalid request frames %q, want one error frame", got)
	}
	conn.WriteMessage(websocket.BinaryMessage, []byte{0x80})
	_, _, err = conn.ReadMessage()
	var closeErr *websocket.CloseError
	if !errors.As(err, &closeErr) || closeErr.Code != websocket.CloseUnsupportedData {
		t.Errorf("binary frame: %v, want close 1003", err)
	}
}

func TestWebSocketAbort(t *testing.T) {
	m := newFakeModel("abcdef")
	m.gate = make(chan struct{})
	ts := newTestServer(t, m)
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	conn.WriteMessage(websocket.TextMessage, []byte(`{"prompt":"x"}`))
	m.gate <- struct{}{}
	if _, data, err := conn.ReadMessage(); err != nil || string(data) != `{"type":"delta","index":0,"text":"a"}` {
		t.Fatalf("first frame %s, %v", data, err)
	}
	conn.Close()
	select {
	case <-m.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("closing the WebSocket did not cancel the sequence")
	}
	waitFor(t, func() bool { return m.running.Load() == 0 })
}

func TestAPIErrorFor(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		typ    string
		code   string
		param  string
	}{
		{fieldErrorf("top_p", "bad"), 400, typeInvalidRequest, codeInvalidValue, "top_p"},
		{fmt.Errorf("wrapped: %w", fieldErrorf("n", "bad")), 400, typeInvalidRequest, codeInvalidValue, "n"},
		{&http.MaxBytesError{Limit: 10}, 413, typeInvalidRequest, codeRequestTooLarge, ""},
		{ErrInvalidRequest, 400, typeInvalidRequest, codeInvalidValue, ""},
		{llm.ErrInvalidParams, 400, typeInvalidRequest, codeInvalidValue, ""},
		{fmt.Errorf("%w: raised", ErrPromptRejected), 400, typeInvalidRequest, codeInvalidValue, ""},
		{fmt.Errorf("x: %w", llm.ErrContextLength), 400, typeInvalidRequest, codeContextLength, ""},
		{ErrModelNotFound, 404, typeInvalidRequest, codeModelNotFound, "model"},
		{llm.ErrQueueFull, 429, typeRateLimit, codeRateLimit, ""},
		{ErrNotReady, 503, typeServer, codeUnavailable, ""},
		{llm.ErrClosed, 503, typeServer, codeUnavailable, ""},
		{fmt.Errorf("run: %w", shutdown.ErrShuttingDown), 503, typeServer, codeUnavailable, ""},
		{context.Canceled, 499, typeInvalidRequest, codeClientClosed, ""},
		{context.DeadlineExceeded, 504, typeServer, codeTimeout, ""},
		{errors.New("boom"), 500, typeServer, codeInternal, ""},
	} {
		got := apiErrorFor(tc.err)
		if got.Status != tc.status || got.Type != tc.typ || got.Code != tc.code || got.Param != tc.param || got.Message == "" {
			t.Errorf("apiErrorFor(%v) = %+v, want %d %s %s %q", tc.err, got, tc.status, tc.typ, tc.code, tc.param)
		}
	}
}
