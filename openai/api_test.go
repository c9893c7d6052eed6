package openai

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserver/modelserver/llm"
)

// testServer serves an API over a fake model: the OpenAI routes, the Truss
// predict route at /predict and the WebSocket at /ws.
type testServer struct {
	api   *API
	model *fakeModel
	reg   *prometheus.Registry
	srv   *httptest.Server
}

func newTestServer(t testing.TB, m *fakeModel) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	api := New(Options{Registerer: reg, MaxRequestBytes: 1 << 16, Logger: slog.New(slog.DiscardHandler)})
	if m != nil {
		api.SetModel(m)
	}
	mux := http.NewServeMux()
	for pattern, h := range api.Routes() {
		mux.Handle(pattern, h)
	}
	mux.Handle("POST /predict", api.PredictHandler())
	mux.Handle("/ws", api.WebSocketHandler())
	ts := &testServer{api: api, model: m, reg: reg, srv: httptest.NewServer(mux)}
	t.Cleanup(func() {
		ts.srv.Close()
		if m != nil {
			m.wg.Wait()
		}
	})
	return ts
}

func (ts *testServer) post(t testing.TB, path, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(ts.srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading body: %v", path, err)
	}
	return resp, data
}

// sseData returns the data payloads of an SSE body, checking the framing.
func sseData(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	for _, event := range strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n") {
		data, ok := strings.CutPrefix(event, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("SSE event %q is not one data line", event)
		}
		out = append(out, data)
	}
	if !strings.HasSuffix(string(body), "\n\n") {
		t.Fatalf("SSE body does not end with a blank line: %q", body)
	}
	return out
}

func decode[T any](t *testing.T, data string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	return v
}

func TestNotReady(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, tc := range []struct{ method, path string }{
		{"POST", "/v1/chat/completions"},
		{"POST", "/v1/completions"},
		{"GET", "/v1/models"},
		{"GET", "/health"},
		{"POST", "/tokenize"},
		{"POST", "/detokenize"},
	} {
		req, _ := http.NewRequest(tc.method, ts.srv.URL+tc.path, strings.NewReader(`{}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s %s = %d, want 503", tc.method, tc.path, resp.StatusCode)
		}
		got := decode[errorBody](t, string(body))
		if got.Error.Type != typeServer || got.Error.Code == nil || *got.Error.Code != codeUnavailable {
			t.Errorf("%s %s error = %s, want server_error/service_unavailable", tc.method, tc.path, body)
		}
	}
	resp, body := ts.post(t, "/predict", `{"prompt":"hi"}`)
	if resp.StatusCode != 503 || string(body) != `{"error":"Model with name model is not ready."}` || resp.Header.Get(headerErrorCode) != "600" {
		t.Errorf("predict before ready = %d %s (code %q), want Truss's 503", resp.StatusCode, body, resp.Header.Get(headerErrorCode))
	}
}

func TestValidationErrors(t *testing.T) {
	chat := func(extra string) string {
		return `{"model":"fake-llm","messages":[{"role":"user","content":"hi"}]` + extra + `}`
	}
	for _, tc := range []struct {
		name      string
		path      string
		body      string
		setup     func(*fakeModel)
		status    int
		errType   string
		code      string
		param     string
		inMessage string
	}{
		{"empty body", "/v1/chat/completions", ``, nil, 400, typeInvalidRequest, codeInvalidValue, "", "empty"},
		{"bad JSON", "/v1/chat/completions", `{"messages":`, nil, 400, typeInvalidRequest, codeInvalidValue, "", "not valid JSON"},
		{"wrong type", "/v1/chat/completions", chat(`,"temperature":"hot"`), nil, 400, typeInvalidRequest, codeInvalidValue, "temperature", "temperature"},
		{"temperature too high", "/v1/chat/completions", chat(`,"temperature":2.5`), nil, 400, typeInvalidRequest, codeInvalidValue, "temperature", "between 0 and 2"},
		{"top_p zero", "/v1/chat/completions", chat(`,"top_p":0`), nil, 400, typeInvalidRequest, codeInvalidValue, "top_p", "top_p"},
		{"top_k below -1", "/v1/chat/completions", chat(`,"top_k":-2`), nil, 400, typeInvalidRequest, codeInvalidValue, "top_k", "top_k"},
		{"n zero", "/v1/chat/completions", chat(`,"n":0`), nil, 400, typeInvalidRequest, codeInvalidValue, "n", "n must be"},
		{"n too large", "/v1/chat/completions", chat(`,"n":65`), nil, 400, typeInvalidRequest, codeInvalidValue, "n", "n must be"},
		{"max_tokens zero", "/v1/chat/completions", chat(`,"max_tokens":0`), nil, 400, typeInvalidRequest, codeInvalidValue, "max_tokens", "at least 1"},
		{"max_completion_tokens negative", "/v1/chat/completions", chat(`,"max_completion_tokens":-1`), nil, 400, typeInvalidRequest, codeInvalidValue, "max_completion_tokens", "at least 1"},
		{"presence_penalty", "/v1/chat/completions", chat(`,"presence_penalty":3`), nil, 400, typeInvalidRequest, codeInvalidValue, "presence_penalty", "between -2 and 2"},
		{"frequency_penalty", "/v1/chat/completions", chat(`,"frequency_penalty":-2.1`), nil, 400, typeInvalidRequest, codeInvalidValue, "frequency_penalty", "between -2 and 2"},
		{"repetition_penalty", "/v1/chat/completions", chat(`,"repetition_penalty":0`), nil, 400, typeInvalidRequest, codeInvalidValue, "repetition_penalty", "repetition_penalty"},
		{"empty stop", "/v1/chat/completions", chat(`,"stop":["a",""]`), nil, 400, typeInvalidRequest, codeInvalidValue, "stop", "stop[1]"},
		{"stop wrong type", "/v1/chat/completions", chat(`,"stop":5`), nil, 400, typeInvalidRequest, codeInvalidValue, "stop", "stop must be"},
		{"stream_options without stream", "/v1/chat/completions", chat(`,"stream_options":{"include_usage":true}`), nil, 400, typeInvalidRequest, codeInvalidValue, "stream_options", "stream"},
		{"top_logprobs without logprobs", "/v1/chat/completions", chat(`,"top_logprobs":2`), nil, 400, typeInvalidRequest, codeInvalidValue, "top_logprobs", "requires logprobs"},
		{"top_logprobs too many", "/v1/chat/completions", chat(`,"logprobs":true,"top_logprobs":21`), nil, 400, typeInvalidRequest, codeInvalidValue, "top_logprobs", "between 0 and 20"},
		{"unknown model", "/v1/chat/completions", `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, nil, 404, typeInvalidRequest, codeModelNotFound, "model", "gpt-9"},
		{"no messages", "/v1/chat/completions", `{"messages":[]}`, nil, 400, typeInvalidRequest, codeInvalidValue, "messages", "at least one"},
		{"bad role", "/v1/chat/completions", `{"messages":[{"role":"tool","content":"x"}]}`, nil, 400, typeInvalidRequest, codeInvalidValue, "messages", "role"},
		{"image part", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, nil, 400, typeInvalidRequest, codeInvalidValue, "messages", "image_url"},
		{"content wrong type", "/v1/chat/completions", `{"messages":[{"role":"user","content":7}]}`, nil, 400, typeInvalidRequest, codeInvalidValue, "messages.content", "content"},
		{"template raises", "/v1/chat/completions", `{"messages":[{"role":"user","content":"RAISE"}]}`, nil, 400, typeInvalidRequest, codeInvalidValue, "", "chat template"},
		{"context length", "/v1/chat/completions", chat(`,"max_tokens":250`), nil, 400, typeInvalidRequest, codeContextLength, "", "maximum context length is 256"},
		{"queue full", "/v1/chat/completions", chat(``), func(m *fakeModel) { m.admitErr = llm.ErrQueueFull }, 429, typeRateLimit, codeRateLimit, "", "queue is full"},
		{"engine closed", "/v1/chat/completions", chat(``), func(m *fakeModel) { m.admitErr = llm.ErrClosed }, 503, typeServer, codeUnavailable, "", "shutting down"},
		{"engine rejects params", "/v1/chat/completions", chat(``), func(m *fakeModel) { m.admitErr = llm.ErrInvalidParams }, 400, typeInvalidRequest, codeInvalidValue, "", "sampling"},
		{"engine context length", "/v1/chat/completions", chat(``), func(m *fakeModel) { m.admitErr = llm.ErrContextLength }, 400, typeInvalidRequest, codeContextLength, "", "context length"},
		{"body too large", "/v1/chat/completions", chat(`,"user":"` + strings.Repeat("x", 1<<16) + `"`), nil, 413, typeInvalidRequest, codeRequestTooLarge, "", "65536"},
		{"prompt wrong shape", "/v1/completions", `{"prompt":{"a":1}}`, nil, 400, typeInvalidRequest, codeInvalidValue, "prompt", "prompt must be"},
		{"prompt missing", "/v1/completions", `{}`, nil, 400, typeInvalidRequest, codeInvalidValue, "prompt", "must not be empty"},
		{"token out of vocabulary", "/v1/completions", `{"prompt":[1,2,999]}`, nil, 400, typeInvalidRequest, codeInvalidValue, "prompt", "999"},
		{"empty token prompt", "/v1/completions", `{"prompt":[[]]}`, nil, 400, typeInvalidRequest, codeInvalidValue, "prompt", "at least one token"},
		{"logprobs too many", "/v1/completions", `{"prompt":"a","logprobs":21}`, nil, 400, typeInvalidRequest, codeInvalidValue, "logprobs", "between 0 and 20"},
		{"echo", "/v1/completions", `{"prompt":"a","echo":true}`, nil, 400, typeInvalidRequest, codeInvalidValue, "echo", "not supported"},
		{"n times prompts", "/v1/completions", `{"prompt":["a","b","c"],"n":30}`, nil, 400, typeInvalidRequest, codeInvalidValue, "n", "at most 64"},
		{"tokenize both", "/tokenize", `{"prompt":"a","messages":[{"role":"user","content":"b"}]}`, nil, 400, typeInvalidRequest, codeInvalidValue, "prompt", "either"},
		{"detokenize out of vocabulary", "/detokenize", `{"tokens":[-1]}`, nil, 400, typeInvalidRequest, codeInvalidValue, "tokens", "-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeModel("ok")
			if tc.setup != nil {
				tc.setup(m)
			}
			ts := newTestServer(t, m)
			resp, body := ts.post(t, tc.path, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			// The error object has exactly OpenAI's four fields.
			var raw map[string]map[string]any
			if err := json.Unmarshal(body, &raw); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			var keys []string
			for k := range raw["error"] {
				keys = append(keys, k)
			}
			if len(raw) != 1 || len(keys) != 4 {
				t.Errorf("error object %s: want exactly error{message,type,param,code}", body)
			}
			got := decode[errorBody](t, string(body)).Error
			if got.Type != tc.errType || deref(got.Code) != tc.code || deref(got.Param) != tc.param {
				t.Errorf("error = type %q code %q param %q, want %q %q %q", got.Type, deref(got.Code), deref(got.Param), tc.errType, tc.code, tc.param)
			}
			if !strings.Contains(got.Message, tc.inMessage) {
				t.Errorf("message %q does not contain %q", got.Message, tc.inMessage)
			}
			if n := len(m.lastRequests()); n != 0 && tc.setup == nil {
				t.Errorf("an invalid request reached the engine %d times", n)
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func TestChatCompletion(t *testing.T) {
	ts := newTestServer(t, newFakeModel("Hello!"))
	resp, body := ts.post(t, "/v1/chat/completions", `{
		"model": "fake-llm",
		"messages": [{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]}],
		"max_tokens": 50, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "seed": 7,
		"presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.1,
		"user": "someone", "tools": [], "unknown_field": {"x": 1}
	}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := decode[chatCompletion](t, string(body))
	prompt := "<|system|>Be brief.<|end|><|user|>Hi there<|end|><|assistant|>"
	want := chatCompletion{
		ID: got.ID, Object: "chat.completion", Created: got.Created, Model: "fake-llm",
		Choices: []chatChoice{{Index: 0, Message: chatReply{Role: "assistant", Content: "seed 7"}, FinishReason: "stop"}},
		Usage:   usage{PromptTokens: len(prompt), CompletionTokens: len("seed 7") + 1, TotalTokens: len(prompt) + len("seed 7") + 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("response (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(got.ID, "chatcmpl-") || time.Since(time.Unix(got.Created, 0)) > time.Minute {
		t.Errorf("id %q created %d: want chatcmpl- prefix and now", got.ID, got.Created)
	}
	seed := uint64(7)
	wantReq := llm.Request{
		Prompt: ts.model.Tokenize(prompt, false),
		Params: llm.SamplingParams{MaxTokens: 50, Temperature: 0.5, TopP: 0.9, TopK: 40, Seed: &seed,
			PresencePenalty: 0.5, FrequencyPenalty: -0.5, RepetitionPenalty: 1.1},
	}
	if diff := cmp.Diff([]llm.Request{wantReq}, ts.model.lastRequests()); diff != "" {
		t.Errorf("engine request (-want +got):\n%s", diff)
	}
}

func TestChatDefaults(t *testing.T) {
	ts := newTestServer(t, newFakeModel("x"))
	ts.post(t, "/v1/chat/completions", `{"messages":[{"role":"developer","content":"d"},{"role":"user","content":null}],"max_completion_tokens":9,"max_tokens":3}`)
	reqs := ts.model.lastRequests()
	if len(reqs) != 1 {
		t.Fatalf("%d engine requests, want 1", len(reqs))
	}
	want := llm.SamplingParams{MaxTokens: 9, Temperature: 1}
	if diff := cmp.Diff(want, reqs[0].Params); diff != "" {
		t.Errorf("params (-want +got):\n%s", diff)
	}
	if got := ts.model.Detokenize(reqs[0].Prompt, false); got != "<|system|>d<|end|><|user|><|end|><|assistant|>" {
		t.Errorf("prompt = %q", got)
	}
}

func TestChatStream(t *testing.T) {
	for _, includeUsage := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "include_usage"}[includeUsage], func(t *testing.T) {
			ts := newTestServer(t, newFakeModel("Hi you"))
			opts := ""
			if includeUsage {
				opts = `,"stream_options":{"include_usage":true}`
			}
			resp, body := ts.post(t, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"stream":true`+opts+`}`)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			events := sseData(t, body)
			if events[len(events)-1] != "[DONE]" {
				t.Fatalf("last event %q, want [DONE]", events[len(events)-1])
			}
			events = events[:len(events)-1]
			if includeUsage {
				last := decode[map[string]json.RawMessage](t, events[len(events)-1])
				if string(last["choices"]) != "[]" {
					t.Errorf("usage chunk choices = %s, want []", last["choices"])
				}
				u := decode[usage](t, string(last["usage"]))
				promptLen := len("<|user|>x<|end|><|assistant|>")
				if want := (usage{promptLen, 7, promptLen + 7}); u != want {
					t.Errorf("usage = %+v, want %+v", u, want)
				}
				events = events[:len(events)-1]
			}
			var text strings.Builder
			for i, ev := range events {
				raw := decode[map[string]json.RawMessage](t, ev)
				usageField, hasUsage := raw["usage"]
				if hasUsage != includeUsage || (hasUsage && string(usageField) != "null") {
					t.Errorf("chunk %d usage = %s (present %v), want null iff include_usage", i, usageField, hasUsage)
				}
				c := decode[chatChunk](t, ev)
				if c.Object != "chat.completion.chunk" || c.Model != "fake-llm" || len(c.Choices) != 1 {
					t.Fatalf("chunk %d = %s", i, ev)
				}
				ch := c.Choices[0]
				switch {
				case i == 0:
					if ch.Delta.Role != "assistant" || ch.Delta.Content == nil || *ch.Delta.Content != "" || ch.FinishReason != nil {
						t.Errorf("first chunk %s, want the role delta", ev)
					}
				case i == len(events)-1:
					if ch.FinishReason == nil || *ch.FinishReason != "stop" || ch.Delta.Content != nil {
						t.Errorf("last chunk %s, want finish_reason stop and an empty delta", ev)
					}
				default:
					if ch.Delta.Content == nil || *ch.Delta.Content == "" || ch.FinishReason != nil || ch.Delta.Role != "" {
						t.Errorf("chunk %d %s, want a content delta", i, ev)
					}
					text.WriteString(*ch.Delta.Content)
				}
			}
			if text.String() != "Hi you" || len(events) != 2+len("Hi you") {
				t.Errorf("streamed %q in %d chunks, want %q in one chunk per token", text.String(), len(events), "Hi you")
			}
		})
	}
}

func TestStopStrings(t *testing.T) {
	ts := newTestServer(t, newFakeModel("one, two. three"))
	for _, tc := range []struct{ stop, want, reason string }{
		{`"."`, "one, two", "stop"},
		{`[", t", "xyz"]`, "one", "stop"},
		{`["zz"]`, "one, two. three", "stop"},
		{`null`, "one, two. three", "stop"},
	} {
		_, body := ts.post(t, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"stop":`+tc.stop+`}`)
		got := decode[chatCompletion](t, string(body))
		if got.Choices[0].Message.Content != tc.want || got.Choices[0].FinishReason != tc.reason {
			t.Errorf("stop %s: %q (%s), want %q (%s)", tc.stop, got.Choices[0].Message.Content, got.Choices[0].FinishReason, tc.want, tc.reason)
		}
	}
	_, body := ts.post(t, "/v1/completions", `{"prompt":"x","max_tokens":3}`)
	got := decode[completion](t, string(body))
	if got.Choices[0].Text != "one" || *got.Choices[0].FinishReason != "length" {
		t.Errorf("max_tokens 3: %q (%s), want \"one\" (length)", got.Choices[0].Text, *got.Choices[0].FinishReason)
	}
}

func TestChoicesN(t *testing.T) {
	ts := newTestServer(t, newFakeModel("unused"))
	_, body := ts.post(t, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"n":3,"seed":10}`)
	got := decode[chatCompletion](t, string(body))
	promptLen := len("<|user|>x<|end|><|assistant|>")
	if got.Usage != (usage{promptLen, 3 * 8, promptLen + 24}) {
		t.Errorf("usage %+v: the prompt counts once, completions sum", got.Usage)
	}
	for i, c := range got.Choices {
		if want := []string{"seed 10", "seed 11", "seed 12"}[i]; c.Index != i || c.Message.Content != want {
			t.Errorf("choice %d = %+v, want index %d content %q", i, c, i, want)
		}
	}

	_, body = ts.post(t, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"n":2,"seed":0,"stream":true}`)
	texts := map[int]string{}
	finished := map[int]bool{}
	opened := map[int]bool{}
	for _, ev := range sseData(t, body) {
		if ev == "[DONE]" {
			continue
		}
		ch := decode[chatChunk](t, ev).Choices[0]
		if ch.Delta.Role != "" {
			opened[ch.Index] = true
		} else if ch.Delta.Content != nil {
			texts[ch.Index] += *ch.Delta.Content
		}
		if ch.FinishReason != nil {
			finished[ch.Index] = true
		}
	}
	if diff := cmp.Diff(map[int]string{0: "seed 0", 1: "seed 1"}, texts); diff != "" || len(finished) != 2 || len(opened) != 2 {
		t.Errorf("n=2 stream: texts (-want +got) %s, opened %v, finished %v", diff, opened, finished)
	}
}

func TestCompletions(t *testing.T) {
	ts := newTestServer(t, newFakeModel("abc"))
	_, body := ts.post(t, "/v1/completions", `{"model":"fake-llm","prompt":["p","qq"],"n":2}`)
	got := decode[completion](t, string(body))
	if len(got.Choices) != 4 || got.Object != "text_completion" || !strings.HasPrefix(got.ID, "cmpl-") {
		t.Fatalf("response %s", body)
	}
	for i, c := range got.Choices {
		if c.Index != i || c.Text != "abc" || *c.FinishReason != "stop" || c.Logprobs != nil {
			t.Errorf("choice %d = %+v", i, c)
		}
	}
	u := decode[usage](t, string(got.Usage))
	if want := (usage{2 + 3, 16, 21}); u != want {
		t.Errorf("usage %+v, want %+v (BOS added to each text prompt)", u, want)
	}
	reqs := ts.model.lastRequests()
	for i, want := range [][]int32{{fakeBOS, 'p' + 3}, {fakeBOS, 'p' + 3}, {fakeBOS, 'q' + 3, 'q' + 3}, {fakeBOS, 'q' + 3, 'q' + 3}} {
		if !containsPrompt(reqs, want) {
			t.Errorf("no engine request %d with prompt %v in %v", i, want, reqs)
		}
	}

	_, body = ts.post(t, "/v1/completions", `{"prompt":[5,6,7],"stream":true,"stream_options":{"include_usage":true}}`)
	events := sseData(t, body)
	var text strings.Builder
	for _, ev := range events[:len(events)-2] {
		c := decode[completion](t, ev)
		text.WriteString(c.Choices[0].Text)
		if string(c.Usage) != "null" {
			t.Errorf("chunk usage %s, want null", c.Usage)
		}
	}
	if text.String() != "abc" {
		t.Errorf("streamed text %q, want abc", text.String())
	}
	last := decode[completion](t, events[len(events)-2])
	if u := decode[usage](t, string(last.Usage)); u != (usage{3, 4, 7}) || len(last.Choices) != 0 {
		t.Errorf("usage chunk %s", events[len(events)-2])
	}
}

func containsPrompt(reqs []llm.Request, prompt []int32) bool {
	for _, r := range reqs {
		if cmp.Equal(r.Prompt, prompt) {
			return true
		}
	}
	return false
}

func TestLogprobs(t *testing.T) {
	ts := newTestServer(t, newFakeModel("ab"))
	_, body := ts.post(t, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":2}`)
	got := decode[chatCompletion](t, string(body))
	want := &chatLogprobs{Content: []chatTokenLogprob{
		{Token: "a", Logprob: -0.5, Bytes: []int{'a'}, TopLogprobs: []chatTopLogprob{{"a", -0.5, []int{'a'}}, {"\x00", -3, []int{0}}}},
		{Token: "b", Logprob: -0.5, Bytes: []int{'b'}, TopLogprobs: []chatTopLogprob{{"b", -0.5, []int{'b'}}, {"\x00", -3, []int{0}}}},
		{Token: "</s>", Logprob: -0.25, Bytes: []int{'<', '/', 's', '>'}, TopLogprobs: []chatTopLogprob{{"</s>", -0.5, []int{'<', '/', 's', '>'}}, {"\x00", -3, []int{0}}}},
	}}
	if diff := cmp.Diff(want, got.Choices[0].Logprobs); diff != "" {
		t.Errorf("chat logprobs (-want +got):\n%s", diff)
	}

	_, body = ts.post(t, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"logprobs":true,"stream":true}`)
	events := sseData(t, body)
	delta := decode[chatChunk](t, events[1]).Choices[0]
	if delta.Logprobs == nil || len(delta.Logprobs.Content) != 1 || delta.Logprobs.Content[0].Token != "a" || len(delta.Logprobs.Content[0].TopLogprobs) != 0 {
		t.Errorf("streamed chat logprobs %s", events[1])
	}

	_, body = ts.post(t, "/v1/completions", `{"prompt":"x","logprobs":1}`)
	c := decode[completion](t, string(body))
	wantC := &completionLogprobs{
		Tokens:        []string{"a", "b", "</s>"},
		TokenLogprobs: []float64{-0.5, -0.5, -0.25},
		TopLogprobs:   []map[string]float64{{"a": -0.5}, {"b": -0.5}, {"</s>": -0.5}},
		TextOffset:    []int{0, 1, 2},
	}
	if diff := cmp.Diff(wantC, c.Choices[0].Logprobs); diff != "" {
		t.Errorf("completion logprobs (-want +got):\n%s", diff)
	}

	_, body = ts.post(t, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`)
	var raw struct {
		Choices []map[string]json.RawMessage `json:"choices"`
	}
	if err := json.Unmarshal(body, &raw); err != nil || string(raw.Choices[0]["logprobs"]) != "null" {
		t.Errorf("logprobs not asked for = %s (%v), want null", body, err)
	}
}

func TestErrorMidStream(t *testing.T) {
	m := newFakeModel("abcdef")
	m.failAfter = 2
	ts := newTestServer(t, m)
	resp, body := ts.post(t, "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"stream":true}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	events := sseData(t, body)
	if len(events) != 5 || events[4] != "[DONE]" {
		t.Fatalf("events %q: want role, a, b, error, [DONE]", events)
	}
	e := decode[errorBody](t, events[3]).Error
	if e.Type != typeServer || !strings.Contains(e.Message, "fake runtime failure") {
		t.Errorf("error event %s", events[3])
	}

	resp, body = ts.post(t, "/v1/completions", `{"prompt":"x"}`)
	if resp.StatusCode != 500 || !strings.Contains(string(body), "fake runtime failure") {
		t.Errorf("non-streamed failure = %d %s, want 500", resp.StatusCode, body)
	}
}

// TestAbortOnDisconnect closes the client at each stage and checks that the
// sequence's context ends and its slot is freed.
func TestAbortOnDisconnect(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		tokens int // tokens let through before the client leaves
	}{
		{"queued, non-streamed", `{"prompt":"x"}`, 0},
		{"mid-stream", `{"prompt":"x","stream":true}`, 2},
		{"mid-stream, n=3", `{"prompt":"x","stream":true,"n":3}`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeModel("abcdefgh")
			m.gate = make(chan struct{})
			ts := newTestServer(t, m)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", ts.srv.URL+"/v1/completions", strings.NewReader(tc.body))
			type result struct {
				resp *http.Response
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				done <- result{resp, err}
			}()
			waitFor(t, func() bool { return m.running.Load() > 0 })
			var resp *http.Response
			if tc.tokens > 0 {
				for range tc.tokens {
					m.gate <- struct{}{}
				}
				r := <-done
				if r.err != nil {
					t.Fatal(r.err)
				}
				resp = r.resp
				// Read the first delta, proving the stream is live.
				line, err := bufio.NewReader(resp.Body).ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "data: ") {
					t.Fatalf("first line %q, %v", line, err)
				}
			}
			sequences := int(m.running.Load())
			cancel()
			if resp != nil {
				resp.Body.Close()
			} else if r := <-done; !errors.Is(r.err, context.Canceled) {
				t.Fatalf("request error %v, want context.Canceled", r.err)
			}
			for range sequences {
				select {
				case <-m.cancelled:
				case <-time.After(5 * time.Second):
					t.Fatal("the engine never saw the context end")
				}
			}
			waitFor(t, func() bool { return m.running.Load() == 0 })
			if got := metricValue(t, ts.reg, "modelserver_llm_num_requests_running", ""); got != 0 {
				t.Errorf("running gauge = %v after abort, want 0", got)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}
