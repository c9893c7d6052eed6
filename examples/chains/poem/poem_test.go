package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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
	lib := testort.Library(t)
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "phi3")
	if err := onnxgen.WritePhi3Dir(model, onnxgen.Phi3Tiny()); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "modelserver")
	if out, err := exec.Command(goTool, "build", "-o", bin, "../../../cmd/modelserver").CombinedOutput(); err != nil {
		t.Fatalf("building modelserver: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--model", model, "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--grpc-port", "0", "--onnxruntime-lib", lib)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan string, 1)
	go func() {
		var lines []string
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			lines = append(lines, s.Text())
		}
		cmd.Wait()
		exited <- strings.Join(lines, "\n")
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		<-exited
	})
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, chains.PredictPath)
	if out, ok := waitReady(t, url, exited); !ok {
		t.Fatalf("modelserver did not serve the tiny Phi-3 directory:\n%s", out)
	}
	poem := servePoem(t, url)
	got, err := poem.RunRemote(testContext(t), PoemInput{Words: seedWords})
	if err != nil || len(got) != len(seedWords) {
		t.Fatalf("RunRemote = %q, %v; want %d poems", got, err, len(seedWords))
	}
}

// waitReady polls readiness until modelserver answers 200; it reports the
// server's output instead when the process exits first.
func waitReady(t *testing.T, url string, exited chan string) (string, bool) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case out := <-exited:
			exited <- out
			return out, false
		default:
		}
		if resp, err := c.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return "", true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("modelserver never became ready")
	return "", false
}
