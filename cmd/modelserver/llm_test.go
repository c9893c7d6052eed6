package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelserver/modelserver/internal/syncbuf"

	"github.com/gorilla/websocket"

	"github.com/modelserver/modelserver/hub/hubtest"
	"github.com/modelserver/modelserver/internal/onnxgen"
	"github.com/modelserver/modelserver/models"
)

// phi3CPUVariant is the folder of the Phi-3 repository that --model phi3
// resolves to on the CPU (models.ResolveLLM).
const phi3CPUVariant = "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4"

// tinyPhi3Name is the base name of the shared tiny model directory, which
// the server reports as the model's id.
const tinyPhi3Name = "tiny-phi3"

var tinyPhi3 struct {
	once sync.Once
	dir  string
	err  error
}

// tinyPhi3Dir returns a tiny random Phi-3 in the onnxruntime-genai layout,
// written once per test binary next to the server binary (TestMain removes
// it). Tests must not change it: copyTinyPhi3 makes a private copy.
func tinyPhi3Dir(t *testing.T) string {
	t.Helper()
	tinyPhi3.once.Do(func() {
		tinyPhi3.dir = filepath.Join(filepath.Dir(serverBinary), tinyPhi3Name)
		tinyPhi3.err = onnxgen.WritePhi3Dir(tinyPhi3.dir, onnxgen.Phi3Tiny())
	})
	if tinyPhi3.err != nil {
		t.Fatal(tinyPhi3.err)
	}
	return tinyPhi3.dir
}

// tinyPhi3Files returns the tiny model's files by name.
func tinyPhi3Files(t *testing.T) map[string][]byte {
	t.Helper()
	dir := tinyPhi3Dir(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := make(map[string][]byte, len(entries))
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	return files
}

// copyTinyPhi3 copies the tiny model into dst (created if missing).
func copyTinyPhi3(t *testing.T, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range tinyPhi3Files(t) {
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// hfEnv is the Hugging Face environment of a server under test: endpoint,
// home and token, with the variables that would override them cleared.
func hfEnv(endpoint, home, token, offline string) []string {
	return []string{
		"HF_ENDPOINT=" + endpoint, "HF_HOME=" + home, "HF_TOKEN=" + token, "HF_HUB_OFFLINE=" + offline,
		"HF_HUB_CACHE=", "HUGGINGFACE_HUB_CACHE=", "HUGGING_FACE_HUB_TOKEN=", "HF_TOKEN_PATH=",
	}
}

// postLLM posts body and returns the status and the whole answer.
func postLLM(t *testing.T, url, body string, header http.Header) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, answer, _, err := postWith(ctx, http.DefaultClient, url, body, header)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return code, answer
}

// decodeAnswer decodes a 200 JSON answer into v.
func decodeAnswer(t *testing.T, what string, code int, body string, v any) {
	t.Helper()
	if code != http.StatusOK {
		t.Fatalf("%s = %d %s, want 200", what, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%s: %v in %s", what, err, body)
	}
}

// openAIError is OpenAI's error object, also sent as an SSE event.
type openAIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

type usageCounts struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type chatCompletion struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage usageCounts `json:"usage"`
}

// streamChunk is one event of a streamed chat or text completion.
type streamChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usageCounts `json:"usage"`
	Error *openAIError `json:"error"`
}

// sseReader reads the data payloads of a Server-Sent Events stream.
type sseReader struct{ br *bufio.Reader }

func newSSEReader(r io.Reader) *sseReader { return &sseReader{br: bufio.NewReader(r)} }

// next returns the next event's data; io.EOF when the stream ended.
func (r *sseReader) next() (string, error) {
	for {
		line, err := r.br.ReadString('\n')
		if data, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: "); ok && err == nil {
			return data, nil
		}
		if err != nil {
			return "", err
		}
	}
}

// rest returns the remaining events and the error that ended the stream
// (io.EOF for a clean end).
func (r *sseReader) rest() ([]string, error) {
	var events []string
	for {
		data, err := r.next()
		if err != nil {
			return events, err
		}
		events = append(events, data)
	}
}

// startStream posts a streamed request and returns its events once the
// server has answered 200.
func startStream(t *testing.T, url, body string) (*sseReader, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("POST %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("stream = %d %s %s, want a 200 event stream", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return newSSEReader(resp.Body), func() { resp.Body.Close(); cancel() }
}

// streamText gathers a completed stream's text, finish reasons and usage,
// checking that it ends with [DONE] and holds no error event.
func streamText(t *testing.T, events []string) (text string, finish []string, usage *usageCounts) {
	t.Helper()
	if len(events) == 0 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %q", events)
	}
	var b strings.Builder
	for _, data := range events[:len(events)-1] {
		var c streamChunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		if c.Error != nil {
			t.Fatalf("error event %+v", *c.Error)
		}
		for _, ch := range c.Choices {
			b.WriteString(ch.Delta.Content + ch.Text)
			if ch.FinishReason != nil {
				finish = append(finish, *ch.FinishReason)
			}
		}
		if c.Usage != nil {
			usage = c.Usage
		}
	}
	return b.String(), finish, usage
}

const chatMessages = `"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]`

// TestLLMDirectory serves the tiny model from its directory and checks each
// route against the others: token counts, streamed against whole answers,
// the Truss route against the OpenAI one.
func TestLLMDirectory(t *testing.T) {
	dir := tinyPhi3Dir(t)
	s := startServer(t, "--model", dir)

	resp, err := http.Get(s.url + "/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /health = %v, %v; want 200", resp, err)
	}
	resp.Body.Close()

	resp, err = http.Get(s.url + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID          string `json:"id"`
			MaxModelLen int    `json:"max_model_len"`
		} `json:"data"`
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || list.Object != "list" || len(list.Data) != 1 || list.Data[0].ID != tinyPhi3Name || list.Data[0].MaxModelLen != onnxgen.Phi3Tiny().ContextLength {
		t.Errorf("GET /v1/models = %+v, %v; want one model %q of %d tokens", list, err, tinyPhi3Name, onnxgen.Phi3Tiny().ContextLength)
	}

	var tokens struct {
		Count  int     `json:"count"`
		Tokens []int32 `json:"tokens"`
	}
	code, body := postLLM(t, s.url+"/tokenize", `{`+chatMessages+`}`, nil)
	decodeAnswer(t, "POST /tokenize", code, body, &tokens)
	if tokens.Count == 0 || tokens.Count != len(tokens.Tokens) {
		t.Fatalf("tokenize = %+v", tokens)
	}

	const maxTokens = 8
	request := fmt.Sprintf(`{"model": %q, %s, "max_tokens": %d, "ignore_eos": true, "temperature": 0`, tinyPhi3Name, chatMessages, maxTokens)
	var chat chatCompletion
	code, body = postLLM(t, s.url+"/v1/chat/completions", request+`}`, nil)
	decodeAnswer(t, "chat completion", code, body, &chat)
	want := usageCounts{PromptTokens: tokens.Count, CompletionTokens: maxTokens, TotalTokens: tokens.Count + maxTokens}
	if len(chat.Choices) != 1 || chat.Choices[0].FinishReason != "length" || chat.Choices[0].Message.Role != "assistant" ||
		chat.Choices[0].Message.Content == "" || chat.Usage != want || chat.Model != tinyPhi3Name {
		t.Errorf("chat completion = %s; want %d tokens of assistant text, finish_reason length, usage %+v", body, maxTokens, want)
	}

	events, cancel := startStream(t, s.url+"/v1/chat/completions", request+`, "stream": true, "stream_options": {"include_usage": true}}`)
	defer cancel()
	rest, err := events.rest()
	if err != io.EOF {
		t.Fatalf("stream ended with %v after %q", err, rest)
	}
	text, finish, usage := streamText(t, rest)
	if len(chat.Choices) == 1 && text != chat.Choices[0].Message.Content {
		t.Errorf("streamed text %q, whole answer %q: greedy decoding must agree", text, chat.Choices[0].Message.Content)
	}
	if len(finish) != 1 || finish[0] != "length" || usage == nil || *usage != want {
		t.Errorf("stream finish reasons %q, usage %+v; want [length] and %+v", finish, usage, want)
	}

	const prompt = `"prompt": "The sky is", "max_tokens": 6, "temperature": 0, "ignore_eos": true`
	var completion struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
		Usage usageCounts `json:"usage"`
	}
	code, body = postLLM(t, s.url+"/v1/completions", `{`+prompt+`}`, nil)
	decodeAnswer(t, "completion", code, body, &completion)
	var predicted string
	code, body = postLLM(t, s.url+"/v1/models/model:predict", `{`+prompt+`}`, nil)
	decodeAnswer(t, "Truss predict", code, body, &predicted)
	if len(completion.Choices) != 1 || completion.Usage.CompletionTokens != 6 || predicted == "" || predicted != completion.Choices[0].Text {
		t.Errorf("Truss predict %q, completion %+v: want the same 6 greedy tokens", predicted, completion)
	}

	code, body = postLLM(t, s.url+"/v1/chat/completions", `{`+chatMessages+`, "temperature": 2.5}`, nil)
	var bad struct {
		Error openAIError `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &bad); err != nil || code != http.StatusBadRequest || bad.Error.Type != "invalid_request_error" ||
		bad.Error.Param == nil || *bad.Error.Param != "temperature" || bad.Error.Code == nil || *bad.Error.Code != "invalid_value" || bad.Error.Message == "" {
		t.Errorf("temperature 2.5 = %d %s; want a 400 OpenAI error on param temperature", code, body)
	}

	if conn, err := net.DialTimeout("tcp", s.grpc, time.Second); err == nil {
		conn.Close()
		t.Errorf("something listens on the gRPC port %s of an LLM server", s.grpc)
	}
	if !strings.Contains(s.stderr.String(), "gRPC is off for LLMs") {
		t.Error("the log does not say that gRPC is off")
	}
}

// fakePhi3Hub serves the tiny model as the CPU variant of the Phi-3
// repository, beside files --model phi3 must not download.
func fakePhi3Hub(t *testing.T, token string) (*hubtest.Server, []hubtest.File) {
	t.Helper()
	var variant []hubtest.File
	for name, data := range tinyPhi3Files(t) {
		lfs := strings.HasSuffix(name, ".onnx") || strings.HasSuffix(name, ".onnx.data") || name == models.TokenizerFile
		variant = append(variant, hubtest.File{Path: phi3CPUVariant + "/" + name, Data: data, LFS: lfs})
	}
	others := []hubtest.File{
		{Path: "README.md", Data: []byte("# Phi-3 mini\n")},
		{Path: "cuda/cuda-fp16/model.onnx.data", Data: []byte("the GPU weights"), LFS: true},
	}
	fake := hubtest.NewServer(hubtest.Options{
		Repo:   models.Phi3Repo,
		Commit: "0123456789abcdef0123456789abcdef01234567",
		Files:  append(variant, others...),
		Token:  token,
	})
	t.Cleanup(fake.Close)
	return fake, others
}

// stopServer sends SIGTERM and waits for exit status 0.
func stopServer(t *testing.T, s *runningServer) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, s, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0: %s", code, s.stderr.String())
	}
}

// chatOnce runs a short chat completion and checks its answer.
func chatOnce(t *testing.T, s *runningServer, model string, header http.Header) {
	t.Helper()
	var chat chatCompletion
	code, body := postLLM(t, s.url+"/v1/chat/completions", `{`+chatMessages+`, "max_tokens": 4, "ignore_eos": true}`, header)
	decodeAnswer(t, "chat completion", code, body, &chat)
	if len(chat.Choices) != 1 || chat.Model != model || chat.Usage.CompletionTokens != 4 {
		t.Errorf("chat completion = %s; want 4 tokens from %s", body, model)
	}
}

// TestPhi3FromHubThenCache downloads --model phi3 from a fake Hub with a
// token, then starts again offline, with the Hub gone, from the cache.
func TestPhi3FromHubThenCache(t *testing.T) {
	const token = "hf_test_token"
	fake, others := fakePhi3Hub(t, token)
	home := t.TempDir()
	s := startServerEnv(t, hfEnv(fake.URL(), home, token, ""), "--model", models.Phi3, "--device", "cpu")
	chatOnce(t, s, models.Phi3, nil)
	requests := fake.Requests()
	if len(requests) == 0 {
		t.Fatal("the fake Hub saw no request")
	}
	for _, r := range requests {
		if !strings.HasPrefix(r.Path, "/cdn/") && r.Authorization != "Bearer "+token {
			t.Errorf("%s %s carried Authorization %q, want the token", r.Method, r.Path, r.Authorization)
		}
	}
	for _, f := range others {
		if n := fake.BodyBytes(f.Path); n != 0 {
			t.Errorf("downloaded %d bytes of %s, which is not in the CPU variant", n, f.Path)
		}
	}
	snapshot := filepath.Join(home, "hub", "models--microsoft--Phi-3-mini-4k-instruct-onnx", "snapshots", "0123456789abcdef0123456789abcdef01234567", filepath.FromSlash(phi3CPUVariant))
	if !models.IsGenAIDir(snapshot) {
		t.Errorf("the cache has no genai model in %s", snapshot)
	}
	stopServer(t, s)
	fake.Close()

	s = startServerEnv(t, hfEnv(fake.URL(), home, token, "1"), "--model", models.Phi3, "--device", "cpu")
	chatOnce(t, s, models.Phi3, nil)
	if n := len(fake.Requests()); n != len(requests) {
		t.Errorf("the offline server made %d Hub requests", n-len(requests))
	}
}

// TestPhi3OfflineWithoutCache: offline, with nothing cached, the server
// exits 1 with one line that says how to provide the files, without
// contacting the Hub.
func TestPhi3OfflineWithoutCache(t *testing.T) {
	lib := ortLibrary(t)
	fake, _ := fakePhi3Hub(t, "")
	for _, tt := range []struct {
		name    string
		offline string
		args    []string
	}{
		{"HF_HUB_OFFLINE", "1", nil},
		{"--hf-offline", "", []string{"--hf-offline"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--host", "127.0.0.1", "--port", fmt.Sprint(freePort(t)), "--grpc-port", "0", "--device", "cpu", "--model", models.Phi3}, tt.args...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, serverBinary, args...)
			cmd.Env = append(append(os.Environ(), "ONNXRUNTIME_LIB="+lib), hfEnv(fake.URL(), t.TempDir(), "", tt.offline)...)
			var stderr syncbuf.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if err == nil || cmd.ProcessState.ExitCode() != 1 {
				t.Fatalf("exit status %v, want 1; stderr: %s", err, stderr.String())
			}
			last := lastLine(stderr.String())
			if !strings.HasPrefix(last, "modelserver: ") || !strings.Contains(last, "--model-path") || !strings.Contains(last, models.Phi3Repo) {
				t.Errorf("last stderr line %q, want a modelserver error naming %s and --model-path", last, models.Phi3Repo)
			}
			if strings.Contains(stderr.String(), "panic") {
				t.Errorf("stderr shows a panic: %s", stderr.String())
			}
		})
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("offline servers made %d Hub requests", n)
	}
}

// TestPhi3ModelPath: --model-path serves --model phi3 from a directory,
// the variant folder itself or a repository holding it, without the Hub.
func TestPhi3ModelPath(t *testing.T) {
	fake, _ := fakePhi3Hub(t, "")
	repo := t.TempDir()
	copyTinyPhi3(t, filepath.Join(repo, filepath.FromSlash(phi3CPUVariant)))
	for _, tt := range []struct{ name, path string }{
		{"variant folder", tinyPhi3Dir(t)},
		{"repository", repo},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startServerEnv(t, hfEnv(fake.URL(), t.TempDir(), "", ""), "--model", models.Phi3, "--model-path", tt.path, "--device", "cpu")
			chatOnce(t, s, models.Phi3, nil)
		})
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("--model-path servers made %d Hub requests", n)
	}
}

// TestLLMAPIKeys: with keys, every LLM route that generates or tokenizes
// needs one; the probes stay open.
func TestLLMAPIKeys(t *testing.T) {
	const key = "llm-key-1"
	s := startServerEnv(t, []string{envAPIKeys + "=" + key}, "--model", tinyPhi3Dir(t))
	for _, route := range []struct{ path, body string }{
		{"/v1/chat/completions", `{` + chatMessages + `, "max_tokens": 2}`},
		{"/v1/completions", `{"prompt": "Hi", "max_tokens": 2}`},
		{"/tokenize", `{"prompt": "Hi"}`},
		{"/detokenize", `{"tokens": [1, 2]}`},
		{"/v1/models/model:predict", `{"prompt": "Hi", "max_tokens": 2}`},
	} {
		for _, tt := range []struct {
			authorization string
			want          int
		}{{"", 401}, {"Bearer wrong", 401}, {"Bearer " + key, 200}} {
			code, body := postLLM(t, s.url+route.path, route.body, http.Header{"Authorization": {tt.authorization}})
			if code != tt.want {
				t.Errorf("POST %s with %q = %d %s, want %d", route.path, tt.authorization, code, body, tt.want)
			}
		}
	}
	for _, path := range []string{"/health", "/v1/models/model", "/"} {
		resp, err := http.Get(s.url + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a key = %v %v, want 200", path, resp, err)
		}
		if err == nil {
			resp.Body.Close()
		}
	}

	url := wsURL(s)
	if _, resp, err := websocket.DefaultDialer.Dial(url, nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("WebSocket upgrade without a key: %v, %v; want 401", resp, err)
	}
	ws, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Authorization": {"Bearer " + key}})
	if err != nil {
		t.Fatalf("WebSocket with a key: %v", err)
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(time.Minute))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"prompt": "Hi", "max_tokens": 3, "ignore_eos": true}`)); err != nil {
		t.Fatal(err)
	}
	for {
		var frame wsFrame
		if err := ws.ReadJSON(&frame); err != nil {
			t.Fatalf("WebSocket answer: %v", err)
		}
		if frame.Type == "delta" {
			continue
		}
		if frame.Type != "done" || frame.Usage == nil || frame.Usage.CompletionTokens != 3 {
			t.Errorf("WebSocket frame %+v, want done after 3 tokens", frame)
		}
		break
	}
	if strings.Contains(s.stderr.String(), key) {
		t.Error("the key appears in the log")
	}
}

// holdNewConnection opens a connection and sends part of a request's
// headers, so that the request arrives only when finish is called.
func holdNewConnection(t *testing.T, s *runningServer, path, body string) (finish func() (int, string, error)) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: modelserver\r\n", path)
	return func() (int, string, error) {
		conn.SetDeadline(time.Now().Add(time.Minute))
		fmt.Fprintf(conn, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
}

// checkRefused checks that a request sent during the drain was refused:
// 503, or a connection closed without an answer (net/http drops requests
// that arrive once http.Server.Shutdown has begun, and new connections
// find the listener closed).
func checkRefused(t *testing.T, what string, code int, body string, err error) {
	t.Helper()
	switch {
	case err != nil:
		t.Logf("%s: refused with %v", what, err)
	case code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down"):
		t.Errorf("%s = %d %s, want 503 or no answer", what, code, body)
	}
}

// wsFrame is a frame of the LLM WebSocket.
type wsFrame struct {
	Type  string       `json:"type"`
	Text  string       `json:"text"`
	Usage *usageCounts `json:"usage"`
	Error *openAIError `json:"error"`
}

// startWSAnswer sends one request over the LLM WebSocket and returns once
// its first delta arrived.
func startWSAnswer(t *testing.T, s *runningServer, body string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(wsURL(s), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	ws.SetReadDeadline(time.Now().Add(time.Minute))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(body)); err != nil {
		t.Fatal(err)
	}
	var first wsFrame
	if err := ws.ReadJSON(&first); err != nil || first.Type != "delta" {
		t.Fatalf("first WebSocket frame %+v, %v; want a delta", first, err)
	}
	return ws
}

// wsRest reads frames, skipping deltas, until the connection ends; it
// returns the other frames and the error that ended the connection.
func wsRest(ws *websocket.Conn) ([]wsFrame, error) {
	var frames []wsFrame
	for {
		var f wsFrame
		if err := ws.ReadJSON(&f); err != nil {
			return frames, err
		}
		if f.Type != "delta" {
			frames = append(frames, f)
		}
	}
}

// TestLLMShutdownFinishesStream: an SSE stream and a WebSocket answer in
// flight at SIGTERM run to their end within the grace period, requests
// sent meanwhile are refused, and the process exits 0.
func TestLLMShutdownFinishesStream(t *testing.T) {
	s := startServer(t, "--model", tinyPhi3Dir(t), "--shutdown-grace", "60s")
	late := holdNewConnection(t, s, "/v1/completions", `{"prompt": "Hi", "max_tokens": 2}`)
	const maxTokens = 1500
	request := fmt.Sprintf(`"prompt": "Once upon a time", "max_tokens": %d, "ignore_eos": true`, maxTokens)
	events, cancel := startStream(t, s.url+"/v1/completions", `{`+request+`, "stream": true, "stream_options": {"include_usage": true}}`)
	defer cancel()
	first, err := events.next()
	if err != nil {
		t.Fatal(err)
	}
	ws := startWSAnswer(t, s, `{`+request+`}`)
	s.cmd.Process.Signal(syscall.SIGTERM)
	waitForLog(t, s, `"msg":"shutting down"`)

	code, body, err := late()
	checkRefused(t, "a request on a connection opened before the signal", code, body, err)
	ctx, cancelNew := context.WithTimeout(context.Background(), time.Minute)
	defer cancelNew()
	code, body, _, err = postWith(ctx, &http.Client{Transport: &http.Transport{}}, s.url+"/v1/completions", `{"prompt": "Hi", "max_tokens": 2}`, nil)
	checkRefused(t, "a request on a new connection", code, body, err)

	rest, err := events.rest()
	if err != io.EOF {
		t.Errorf("stream ended with %v", err)
	}
	_, finish, usage := streamText(t, append([]string{first}, rest...))
	if len(finish) != 1 || finish[0] != "length" || usage == nil || usage.CompletionTokens != maxTokens {
		t.Errorf("stream finish reasons %q, usage %+v; want [length] after %d tokens", finish, usage, maxTokens)
	}
	frames, err := wsRest(ws)
	if len(frames) != 1 || frames[0].Type != "done" || frames[0].Usage == nil || frames[0].Usage.CompletionTokens != maxTokens {
		t.Errorf("WebSocket frames after the signal %+v, want done after %d tokens", frames, maxTokens)
	}
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("WebSocket ended with %v, want close 1001", err)
	}
	if code := exitCode(t, s, 30*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if strings.Contains(s.stderr.String(), "grace period over") {
		t.Errorf("the grace period ran out: %s", s.stderr.String())
	}
}

// TestLLMShutdownGraceCutsStream: an SSE stream and a WebSocket answer that
// outlive the grace period end with an explicit error (an event and
// [DONE]; a frame and close 1001), and the process exits 0.
func TestLLMShutdownGraceCutsStream(t *testing.T) {
	s := startServer(t, "--model", tinyPhi3Dir(t), "--shutdown-grace", "100ms")
	request := fmt.Sprintf(`"prompt": "Once upon a time", "max_tokens": %d, "ignore_eos": true`, onnxgen.Phi3Tiny().ContextLength-16)
	events, cancel := startStream(t, s.url+"/v1/completions", `{`+request+`, "stream": true}`)
	defer cancel()
	if _, err := events.next(); err != nil {
		t.Fatal(err)
	}
	ws := startWSAnswer(t, s, `{`+request+`}`)
	s.cmd.Process.Signal(syscall.SIGTERM)

	isShutdownError := func(e *openAIError) bool {
		return e != nil && e.Type == "server_error" && e.Code != nil && *e.Code == "service_unavailable" && strings.Contains(e.Message, "shutting down")
	}
	rest, err := events.rest()
	if err != io.EOF {
		t.Errorf("stream ended with %v", err)
	}
	if len(rest) < 2 || rest[len(rest)-1] != "[DONE]" {
		t.Errorf("stream cut by the shutdown ends with %q, want an error event and [DONE]", rest[max(len(rest)-2, 0):])
	} else {
		var last streamChunk
		if err := json.Unmarshal([]byte(rest[len(rest)-2]), &last); err != nil || !isShutdownError(last.Error) {
			t.Errorf("last event before [DONE] %q, want a service_unavailable error", rest[len(rest)-2])
		}
	}
	frames, err := wsRest(ws)
	if len(frames) != 1 || frames[0].Type != "error" || !isShutdownError(frames[0].Error) {
		t.Errorf("WebSocket frames after the signal %+v, want one service_unavailable error", frames)
	}
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("WebSocket ended with %v, want close 1001", err)
	}
	if code := exitCode(t, s, 15*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// TestLLMConfigLimits: the model directory's config.yaml sets the engine's
// slots and queue: two streams run, one waits, and a fourth request is
// refused with 429.
func TestLLMConfigLimits(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "limited")
	copyTinyPhi3(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("model_name: limited-phi3\nllm:\n  max_sequences: 2\n  queue_size: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--model", dir)
	resp, err := http.Get(s.url + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"id":"limited-phi3"`) {
		t.Errorf("GET /v1/models = %s, want config.yaml's model_name", b)
	}
	long := fmt.Sprintf(`{%s, "max_tokens": %d, "ignore_eos": true, "stream": true}`, chatMessages, onnxgen.Phi3Tiny().ContextLength-64)
	var streams []*sseReader
	var cancels []func()
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for i := range 3 {
		events, cancel := startStream(t, s.url+"/v1/chat/completions", long)
		streams, cancels = append(streams, events), append(cancels, cancel)
		// The role delta comes at admission; a running stream's second
		// event is its first token.
		n := 2
		if i == 2 {
			n = 1 // the third waits for a slot
		}
		for range n {
			if _, err := events.next(); err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
		}
	}

	code, body := postLLM(t, s.url+"/v1/chat/completions", `{`+chatMessages+`, "max_tokens": 2}`, nil)
	var refused struct {
		Error openAIError `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &refused); err != nil || code != http.StatusTooManyRequests || refused.Error.Type != "rate_limit_error" {
		t.Errorf("a request beyond the queue = %d %s, want a 429 rate_limit_error", code, body)
	}

	// Freeing a slot starts the waiting stream.
	cancels[0]()
	got := make(chan error, 1)
	go func() {
		_, err := streams[2].next()
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("the waiting stream: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("the waiting stream did not start when a slot was freed")
	}
}
