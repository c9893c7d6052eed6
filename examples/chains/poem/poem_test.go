package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/modelserver/modelserver/chains"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/onnxgen"
	"github.com/modelserver/modelserver/internal/testbin"
	"github.com/modelserver/modelserver/internal/testort"
	"github.com/modelserver/modelserver/llm"
	"github.com/modelserver/modelserver/openai"
	"github.com/modelserver/modelserver/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// FakePhiLLM stands in for the LLM, as in the seeds' local run.
type FakePhiLLM struct{}

func (FakePhiLLM) RunRemote(_ context.Context, in LLMInput) (string, error) {
	prompt := in.Messages[len(in.Messages)-1].Content
	return "Here's a poem about " + prompt[strings.LastIndex(prompt, " ")+1:], nil
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

var seedWords = []string{"bird", "plane", "superman"}

func TestLocalWithFakeLLM(t *testing.T) {
	c, err := chains.New(&PoemGenerator{LLM: chains.Mock[LLMInput, string](FakePhiLLM{})}, PhiLLM)
	if err != nil {
		t.Fatal(err)
	}
	poem, err := chains.RunLocal[PoemInput, []string](c, chains.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := poem.RunRemote(testContext(t), PoemInput{Words: seedWords})
	want := []string{"Here's a poem about bird", "Here's a poem about plane", "Here's a poem about superman"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("RunRemote = %q, %v; want %q", got, err, want)
	}
}

// servePoem serves PoemGenerator on loopback with the LLM at llmURL and
// returns a client of it.
func servePoem(t *testing.T, llmURL string) *chains.Dep[PoemInput, []string] {
	t.Helper()
	c, err := chains.New(Chainlets()...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		err := c.Serve(ctx, ln, chains.ServeOptions{Chainlet: "PoemGenerator", Endpoints: map[string]chains.Endpoint{"PhiLLM": {URL: llmURL}}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Error(err)
		}
	})
	poem := chains.NewClient[PoemInput, []string]("PoemGenerator", chains.Endpoint{URL: "http://" + ln.Addr().String() + chains.PredictPath}, chains.DepOptions{}, "")
	t.Cleanup(func() {
		poem.CloseIdleConnections()
		cancel()
		wg.Wait()
	})
	return &poem
}

// TestRemoteAgainstTrussLLMRoute checks the request PoemGenerator sends to
// an LLM Chainlet and reads the answer shape modelserver's LLM predict route
// gives (a JSON string).
func TestRemoteAgainstTrussLLMRoute(t *testing.T) {
	var mu sync.Mutex
	var bodies []map[string]any
	llm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.URL.Path != chains.PredictPath {
			http.Error(w, "bad request", 400)
			return
		}
		mu.Lock()
		bodies = append(bodies, body)
		mu.Unlock()
		msgs := body["messages"].([]any)
		user := msgs[len(msgs)-1].(map[string]any)["content"].(string)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "%q", "  Roses for "+strings.TrimPrefix(user, "Write a poem about ")+"\n")
	}))
	t.Cleanup(llm.Close)
	poem := servePoem(t, llm.URL+chains.PredictPath)
	got, err := poem.RunRemote(testContext(t), PoemInput{Words: seedWords})
	if want := []string{"Roses for bird", "Roses for plane", "Roses for superman"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("RunRemote = %q, %v; want %q", got, err, want)
	}
	if len(bodies) != 3 {
		t.Fatalf("LLM got %d requests, want 3", len(bodies))
	}
	b := bodies[0]
	if b["max_tokens"] != float64(maxPoemTokens) || b["stream"] != false || len(b["messages"].([]any)) != 2 {
		t.Errorf("LLM request %v, want messages, max_tokens %d and stream false", b, maxPoemTokens)
	}
}

// TestRemoteAgainstTinyPhi3InProcess serves the generated tiny Phi-3 with
// modelserver's own stack (llm engine, openai predict handler, server) in
// this process, as the LLM Chainlet, and runs the poem Chain against it.
func TestRemoteAgainstTinyPhi3InProcess(t *testing.T) {
	if err := engine.InitONNXRuntime(testort.Library(t)); err != nil {
		testort.Unusable(t, err)
	}
	dir := t.TempDir()
	if err := onnxgen.WritePhi3Dir(dir, onnxgen.Phi3Tiny()); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	e, err := llm.Open(dir, llm.Options{MaxContext: 512, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	api := openai.New(openai.Options{Logger: quiet})
	api.SetModel(openai.ModelFromEngine(e, "phi3-tiny"))
	srv := server.New(server.Options{Logger: quiet, Routes: api.Routes()})
	srv.SetReady(server.Model{Handler: api.PredictHandler()})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	poem := servePoem(t, ts.URL+chains.PredictPath)
	got, err := poem.RunRemote(testContext(t), PoemInput{Words: seedWords})
	if err != nil || len(got) != len(seedWords) {
		t.Fatalf("RunRemote = %q, %v; want %d poems", got, err, len(seedWords))
	}
	t.Logf("poems from the random-weight model: %q", got)
}

// TestRemoteAgainstModelserverTinyPhi3 runs the Chain against modelserver
// serving the generated tiny Phi-3 model as the LLM Chainlet.
func TestRemoteAgainstModelserverTinyPhi3(t *testing.T) {
	if testing.Short() {
		t.Skip("builds modelserver and serves an LLM")
	}
	model := filepath.Join(t.TempDir(), "phi3")
	if err := onnxgen.WritePhi3Dir(model, onnxgen.Phi3Tiny()); err != nil {
		t.Fatal(err)
	}
	url := testbin.Modelserver(t, "--model", model) + chains.PredictPath
	poem := servePoem(t, url)
	got, err := poem.RunRemote(testContext(t), PoemInput{Words: seedWords})
	if err != nil || len(got) != len(seedWords) {
		t.Fatalf("RunRemote = %q, %v; want %d poems", got, err, len(seedWords))
	}
}
