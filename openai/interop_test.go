package openai

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// requireInterop skips when a reference client is missing, unless
// MODELSERVER_REQUIRE_INTEROP=1 (CI), where a missing client fails the test.
func requireInterop(t *testing.T, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("MODELSERVER_REQUIRE_INTEROP") == "1" {
		t.Fatalf("%s is missing and MODELSERVER_REQUIRE_INTEROP=1", what)
	}
	t.Skipf("%s is missing; set MODELSERVER_REQUIRE_INTEROP=1 to require it", what)
}

// interopServer serves m with the OpenAI routes and /metrics.
func interopServer(t *testing.T, m Model) *httptest.Server {
	t.Helper()
	reg := prometheus.NewRegistry()
	api := New(Options{Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	api.SetModel(m)
	mux := http.NewServeMux()
	for pattern, h := range api.Routes() {
		mux.Handle(pattern, h)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// sdkReport is what testdata/node/interop.mjs prints.
type sdkReport struct {
	Models []string `json:"models"`
	Chat   struct {
		Content, Finish, Object string
		Usage                   usage
	} `json:"chat"`
	ChatStream sdkStream `json:"chatStream"`
	ChatN      struct {
		Contents []string `json:"contents"`
		Indexes  []int    `json:"indexes"`
		Usage    usage    `json:"usage"`
	} `json:"chatN"`
	ChatStreamN sdkStream `json:"chatStreamN"`
	Completion  struct {
		Text, Finish  string
		Usage         usage
		LogprobTokens int `json:"logprobTokens"`
	} `json:"completion"`
	CompletionStream struct {
		Text  string `json:"text"`
		Usage *usage `json:"usage"`
	} `json:"completionStream"`
	Invalid struct {
		Status       int    `json:"status"`
		Type         string `json:"type"`
		Param        string `json:"param"`
		Code         string `json:"code"`
		IsBadRequest bool   `json:"isBadRequest"`
	} `json:"invalid"`
	Abort struct {
		Chunks        int     `json:"chunks"`
		Finished      bool    `json:"finished"`
		RunningBefore int     `json:"runningBefore"`
		Error         string  `json:"error"`
		RunningAfter  int     `json:"runningAfter"`
		MsUntilFree   float64 `json:"msUntilFree"`
	} `json:"abort"`
}

type sdkStream struct {
	Contents   map[string]string  `json:"contents"`
	Finish     map[string]string  `json:"finish"`
	FirstRoles map[string]*string `json:"firstRoles"`
	Chunks     int                `json:"chunks"`
	Usage      *usage             `json:"usage"`
}

// runSDK runs the openai npm SDK script against srv.
func runSDK(t *testing.T, srv *httptest.Server, model string) sdkReport {
	t.Helper()
	dir := filepath.Join("testdata", "node")
	_, err := os.Stat(filepath.Join(dir, "node_modules", "openai"))
	requireInterop(t, "the openai npm SDK (npm ci --prefix openai/testdata/node)", err == nil)
	node, err := exec.LookPath("node")
	requireInterop(t, "node", err == nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "interop.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OPENAI_BASE_URL="+srv.URL+"/v1", "METRICS_URL="+srv.URL+"/metrics", "MODEL="+model)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node interop.mjs: %v\n%s", err, stderr.String())
	}
	var r sdkReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("node output %s: %v", out, err)
	}
	t.Logf("SDK abort: freed %.1f ms after abort, %d chunks read", r.Abort.MsUntilFree, r.Abort.Chunks)
	return r
}

// checkSDKReport asserts what holds for any model: shapes, counts, usage
// equal to the tokenizer's counts, and the aborted slot freed.
func checkSDKReport(t *testing.T, m Model, r sdkReport) {
	t.Helper()
	chatPrompt, err := m.RenderChat([]Message{{Role: "user", Content: "Say hello."}}, true)
	if err != nil {
		t.Fatal(err)
	}
	chatTokens := len(m.Tokenize(chatPrompt, false))
	completionTokens := len(m.Tokenize("Once upon a time", true))
	if len(r.Models) != 1 || r.Models[0] != m.Name() {
		t.Errorf("models.list = %v", r.Models)
	}
	if r.Chat.Object != "chat.completion" || r.Chat.Usage.PromptTokens != chatTokens || r.Chat.Usage.TotalTokens != chatTokens+r.Chat.Usage.CompletionTokens || r.Chat.Usage.CompletionTokens < 1 || r.Chat.Usage.CompletionTokens > 8 {
		t.Errorf("chat = %+v, want %d prompt tokens", r.Chat, chatTokens)
	}
	s := r.ChatStream
	if s.Contents["0"] != r.Chat.Content || s.Finish["0"] != r.Chat.Finish || s.FirstRoles["0"] == nil || *s.FirstRoles["0"] != "assistant" || s.Usage == nil || *s.Usage != r.Chat.Usage {
		t.Errorf("chat stream = %+v, want the non-streamed answer %+v", s, r.Chat)
	}
	if len(r.ChatN.Contents) != 3 || r.ChatN.Indexes[2] != 2 || r.ChatN.Usage.PromptTokens != chatTokens {
		t.Errorf("chat n=3 = %+v", r.ChatN)
	}
	if len(r.ChatStreamN.Contents) != 2 || len(r.ChatStreamN.Finish) != 2 || r.ChatStreamN.Usage != nil {
		t.Errorf("chat stream n=2 = %+v, want two finished choices and no usage", r.ChatStreamN)
	}
	c := r.Completion
	if c.Usage.PromptTokens != completionTokens || c.LogprobTokens != c.Usage.CompletionTokens || r.CompletionStream.Text != c.Text || r.CompletionStream.Usage == nil || *r.CompletionStream.Usage != c.Usage {
		t.Errorf("completion = %+v, stream = %+v, want %d prompt tokens and equal answers", c, r.CompletionStream, completionTokens)
	}
	if inv := r.Invalid; inv.Status != 400 || !inv.IsBadRequest || inv.Param != "temperature" || inv.Type != typeInvalidRequest {
		t.Errorf("invalid request = %+v, want a BadRequestError on temperature", inv)
	}
	if a := r.Abort; (a.Error != "none" && a.Error != "APIUserAbortError") || a.Finished || a.RunningBefore < 1 || a.RunningAfter != 0 {
		t.Errorf("abort = %+v, want the stream cut short and the running gauge back to 0", a)
	}
	if got := m.Stats().Running; got != 0 {
		t.Errorf("Stats().Running = %d after the SDK run, want 0", got)
	}
}

func TestSDKInteropFake(t *testing.T) {
	m := newFakeModel(strings.Repeat("abc ", 80))
	m.delay = 2 * time.Millisecond
	srv := interopServer(t, m)
	r := runSDK(t, srv, m.Name())
	checkSDKReport(t, m, r)
	if r.Chat.Content != "abc abc " || r.ChatN.Contents[1] != "seed 2" {
		t.Errorf("chat %q, n=3 %q", r.Chat.Content, r.ChatN.Contents)
	}
	srv.Close()
	m.wg.Wait()
}

// TestCurlStreaming reads SSE through curl -N while the model is held
// between tokens, proving each event reaches the client before the next
// token exists.
func TestCurlStreaming(t *testing.T) {
	curl, err := exec.LookPath("curl")
	requireInterop(t, "curl", err == nil)
	m := newFakeModel("abc")
	m.gate = make(chan struct{})
	srv := interopServer(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-sN", "--fail-with-body", srv.URL+"/v1/chat/completions",
		"-H", "Content-Type: application/json",
		"-d", `{"messages":[{"role":"user","content":"x"}],"stream":true}`)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(stdout)
	readEvent := func() string {
		t.Helper()
		line, err := lines.ReadString('\n')
		if err != nil {
			t.Fatalf("reading curl output: %v", err)
		}
		if blank, err := lines.ReadString('\n'); err != nil || blank != "\n" {
			t.Fatalf("event %q not followed by a blank line (%q, %v)", line, blank, err)
		}
		return strings.TrimSuffix(line, "\n")
	}
	if ev := readEvent(); !strings.Contains(ev, `"role":"assistant"`) {
		t.Errorf("first event %s, want the role delta", ev)
	}
	for _, want := range []string{"a", "b", "c"} {
		m.gate <- struct{}{} // one token; its event must arrive before the next
		if ev := readEvent(); !strings.Contains(ev, `"content":"`+want+`"`) {
			t.Errorf("event %s, want content %q", ev, want)
		}
	}
	m.gate <- struct{}{} // eos
	if ev := readEvent(); !strings.Contains(ev, `"finish_reason":"stop"`) {
		t.Errorf("event %s, want the finish chunk", ev)
	}
	if ev := readEvent(); ev != "data: [DONE]" {
		t.Errorf("last event %s, want [DONE]", ev)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("curl: %v", err)
	}
	srv.Close()
	m.wg.Wait()
}
