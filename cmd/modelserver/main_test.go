package main

import (
	"bufio"
	"bytes"
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
	"testing"
	"time"

	"github.com/modelserver/modelserver/internal/syncbuf"

	"github.com/modelserver/modelserver/internal/onnxgen"
	"github.com/modelserver/modelserver/internal/testort"
)

// These tests run the real binary, as a user would.

var serverBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modelserver-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBinary = filepath.Join(dir, "modelserver")
	build := exec.Command("go", "build", "-o", serverBinary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building modelserver:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ortLibrary returns the ONNX Runtime library the server under test uses.
func ortLibrary(t *testing.T) string { return testort.Library(t) }

func writeModelDir(t *testing.T, config string, model []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if model != nil {
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), model, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type runningServer struct {
	url    string
	grpc   string // host:port of the gRPC listener
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	exited chan struct{} // closed when the process has exited
}

// startServer runs modelserver with args and waits until it is ready.
func startServer(t *testing.T, args ...string) *runningServer {
	t.Helper()
	return startServerEnv(t, nil, args...)
}

// startServerEnv runs modelserver with args and the extra environment
// variables env ("KEY=value"), and waits until it is ready.
func startServerEnv(t *testing.T, env []string, args ...string) *runningServer {
	t.Helper()
	port, grpcPort := freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, serverBinary, append([]string{"--host", "127.0.0.1", "--port", fmt.Sprint(port), "--grpc-port", fmt.Sprint(grpcPort)}, args...)...)
	cmd.Env = append(append(os.Environ(), "ONNXRUNTIME_LIB="+ortLibrary(t)), env...)
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cancel()
			<-done
		}
		cancel()
	})
	s := &runningServer{url: fmt.Sprintf("http://127.0.0.1:%d", port), grpc: fmt.Sprintf("127.0.0.1:%d", grpcPort), cmd: cmd, stderr: stderr, exited: done}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("modelserver exited early: %s", stderr.String())
		default:
		}
		resp, err := http.Get(s.url + "/v1/models/model")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("modelserver not ready after 60 s: %s", stderr.String())
	return nil
}

func TestDefaultModelServes(t *testing.T) {
	s := startServer(t)
	body := `{"features": [[` + strings.TrimSuffix(strings.Repeat("0.5, ", 16), ", ") + `], [` + strings.TrimSuffix(strings.Repeat("-1, ", 16), ", ") + `]]}`
	resp, err := http.Post(s.url+"/v1/models/model:predict", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Probabilities [][]float64 `json:"probabilities"`
		Label         []int64     `json:"label"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("predict = %d, %v", resp.StatusCode, err)
	}
	if len(out.Probabilities) != 2 || len(out.Label) != 2 {
		t.Fatalf("answer %+v, want 2 rows", out)
	}
	for i, row := range out.Probabilities {
		sum, best := 0.0, 0
		for j, p := range row {
			sum += p
			if p > row[best] {
				best = j
			}
		}
		if len(row) != 4 || sum < 0.999 || sum > 1.001 || int64(best) != out.Label[i] {
			t.Errorf("row %d: probabilities %v (sum %g), label %d", i, row, sum, out.Label[i])
		}
	}
}

func TestMinimalModelDirectory(t *testing.T) {
	model, err := onnxgen.MixedFixture()
	if err != nil {
		t.Fatal(err)
	}
	dir := writeModelDir(t, "model_name: mixed\nunknown_key: 1\nruntime:\n  typo_key: 2\n", model)
	s := startServer(t, "--model", dir)
	resp, err := http.Get(s.url + "/v1/models/model/schema")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"a"`) {
		t.Errorf("schema = %d %s", resp.StatusCode, b)
	}
	// Unknown keys are logged once, naming them.
	if log := s.stderr.String(); strings.Count(log, "unknown_key") != 1 || !strings.Contains(log, "runtime.typo_key") {
		t.Errorf("log does not report the unknown keys once: %s", log)
	}
}

func TestStartupErrors(t *testing.T) {
	lib := ortLibrary(t)
	model, err := onnxgen.MixedFixture()
	if err != nil {
		t.Fatal(err)
	}
	notALibrary := filepath.Join(t.TempDir(), "libonnxruntime.so")
	os.WriteFile(notALibrary, []byte("not a library"), 0o644)
	tests := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"malformed YAML", []string{"--model", writeModelDir(t, "model_name: [unclosed\n", model)}, lib, "invalid config.yaml"},
		{"missing model file", []string{"--model", writeModelDir(t, "model_name: x\n", nil)}, lib, "has no model.onnx"},
		{"not a model", []string{"--model", "/nonexistent/model"}, lib, "not a directory or a built-in model"},
		{"corrupt model", []string{"--model", writeModelDir(t, "model_name: x\n", []byte("garbage"))}, lib, "loading model"},
		{"missing library", nil, "/nonexistent/libonnxruntime.so", "install-onnxruntime.sh"},
		{"unusable library", nil, notALibrary, "install-onnxruntime.sh"},
		{"bad flag", []string{"--port", "x"}, lib, "invalid value"},
		{"bad open route", []string{"--open-routes", "GET /{"}, lib, "--open-routes"},
		{"missing key file", []string{"--api-keys-file", "/nonexistent/keys"}, lib, "--api-keys-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(serverBinary, append([]string{"--host", "127.0.0.1", "--port", fmt.Sprint(freePort(t)), "--grpc-port", "0"}, tt.args...)...)
			cmd.Env = append(os.Environ(), "ONNXRUNTIME_LIB="+tt.env)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if err == nil || cmd.ProcessState.ExitCode() == 0 {
				t.Fatalf("exit status 0, want failure; stderr: %s", stderr.String())
			}
			last := lastLine(stderr.String())
			if !strings.HasPrefix(last, "modelserver: ") || !strings.Contains(last, tt.want) {
				t.Errorf("last stderr line %q, want a modelserver error containing %q", last, tt.want)
			}
			if strings.Contains(stderr.String(), "panic") || strings.Contains(stderr.String(), "goroutine ") {
				t.Errorf("stderr shows a panic: %s", stderr.String())
			}
		})
	}
}

func lastLine(s string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			last = sc.Text()
		}
	}
	return last
}

// TestBenchCommand runs a short `modelserver bench` so the command cannot rot;
// the figures themselves are not asserted.
func TestBenchCommand(t *testing.T) {
	cmd := exec.Command(serverBinary, "bench", "--duration", "200ms", "--concurrency", "1,4", "--max-batch-size", "4", "--transports", "http,ws,grpc")
	cmd.Env = append(os.Environ(), "ONNXRUNTIME_LIB="+ortLibrary(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench failed: %v\n%s", err, out)
	}
	for _, want := range []string{"direct Run", "HTTP msgpack, batching on", "WebSocket msgpack, batching off", "gRPC raw contents, batching on", "overhead at concurrency 1", "batching gain served"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("bench output lacks %q:\n%s", want, out)
		}
	}
}
