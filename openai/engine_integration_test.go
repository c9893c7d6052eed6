package openai

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/onnxgen"
	"github.com/modelserver/modelserver/internal/testort"
	"github.com/modelserver/modelserver/llm"
)

// tinyEngine opens the tiny generated Phi-3 with a small KV cache.
func tinyEngine(t testing.TB, opts llm.Options) *llm.Engine {
	t.Helper()
	if err := engine.InitONNXRuntime(testort.Library(t)); err != nil {
		testort.Unusable(t, err)
	}
	dir := t.TempDir()
	if err := onnxgen.WritePhi3Dir(dir, onnxgen.Phi3Tiny()); err != nil {
		t.Fatal(err)
	}
	if opts.MaxContext == 0 {
		opts.MaxContext = 512
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	e, err := llm.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestEngineSDKInterop(t *testing.T) {
	e := tinyEngine(t, llm.Options{MaxSequences: 4})
	m := ModelFromEngine(e, "tiny-phi3")
	srv := interopServer(t, m)
	r := runSDK(t, srv, m.Name())
	checkSDKReport(t, m, r)
}

// TestEngineAbortFreesSlot disconnects while a long generation runs and
// checks that the sequence leaves the engine, freeing its slot, long before
// it would have finished. (That the engine stops before its next step is
// the llm package's contract and tested there; here the timing of the
// client's disconnect against 0.3 ms steps is too loose to count steps.)
func TestEngineAbortFreesSlot(t *testing.T) {
	e := tinyEngine(t, llm.Options{MaxSequences: 2})
	m := ModelFromEngine(e, "")
	srv := interopServer(t, m)
	const maxTokens = 400
	for _, stream := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		body := fmt.Sprintf(`{"prompt":"Once upon a time","max_tokens":%d,"ignore_eos":true,"stream":%v}`, maxTokens, stream)
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/completions", strings.NewReader(body))
		done := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			done <- err
		}()
		before := e.Stats().DecodeSteps
		waitFor(t, func() bool { return e.Stats().Running == 1 })
		left := e.Stats().DecodeSteps
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("stream %v: client error %v, want context.Canceled", stream, err)
		}
		waitFor(t, func() bool { s := e.Stats(); return s.Running == 0 && s.SlotsUsed == 0 && s.Waiting == 0 })
		after := e.Stats().DecodeSteps
		t.Logf("stream %v: %d decode steps ran after the client left", stream, after-left)
		if after-before >= maxTokens-1 {
			t.Errorf("stream %v: %d decode steps, the sequence ran to completion", stream, after-before)
		}
	}
}

func TestEngineChatUsageMatchesTokenizer(t *testing.T) {
	e := tinyEngine(t, llm.Options{MaxSequences: 4})
	m := ModelFromEngine(e, "")
	ts := newTestServer(t, nil)
	ts.api.SetModel(m)
	_, body := ts.post(t, "/v1/chat/completions", `{"messages":[{"role":"user","content":"Hi"}],"max_tokens":5,"temperature":0,"n":2}`)
	got := decode[chatCompletion](t, string(body))
	prompt, _ := m.RenderChat([]Message{{Role: "user", Content: "Hi"}}, true)
	if want := len(m.Tokenize(prompt, false)); got.Usage.PromptTokens != want || len(got.Choices) != 2 {
		t.Fatalf("response %s, want %d prompt tokens and 2 choices", body, want)
	}
	if got.Choices[0].Message.Content != got.Choices[1].Message.Content {
		t.Errorf("greedy choices differ: %q vs %q", got.Choices[0].Message.Content, got.Choices[1].Message.Content)
	}
	for _, c := range got.Choices {
		if c.FinishReason == "length" && len(m.Tokenize(c.Message.Content, false)) > 5+1 {
			t.Errorf("choice %q is longer than max_tokens", c.Message.Content)
		}
	}
}

// BenchmarkEngineVsAPI runs Bench on the tiny Phi-3 (32 KV slots): the
// engine driven directly, then through HTTP SSE, at concurrency 1, 8 and
// 32, and reports the API's share of the engine's tokens/s per level. Run
// it with -benchtime=1x.
func BenchmarkEngineVsAPI(b *testing.B) {
	e := tinyEngine(b, llm.Options{MaxSequences: 32})
	m := ModelFromEngine(e, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for b.Loop() {
		results, err := Bench(ctx, m, BenchOptions{RequestsPerClient: 4, PromptTokens: 32, MaxTokens: 64})
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i+1 < len(results); i += 2 {
			engine, api := results[i], results[i+1]
			b.Log(engine)
			b.Log(api)
			b.ReportMetric(api.TokensPerSecond/engine.TokensPerSecond, fmt.Sprintf("api/engine-c%d", engine.Concurrency))
		}
	}
}
