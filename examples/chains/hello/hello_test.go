package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/modelserver/modelserver/chains"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var greeting = regexp.MustCompile(`^Hello, (\w+)! Lucky numbers: ([1-9]) ([1-9]) ([1-9])$`)

// checkGreetings checks HelloAll's answer for names: one line per name, in
// order, with lucky numbers in [1, len(name)].
func checkGreetings(t *testing.T, got string, names []string) {
	t.Helper()
	lines := strings.Split(got, "\n")
	if len(lines) != len(names) {
		t.Fatalf("answer %q, want %d lines", got, len(names))
	}
	for i, line := range lines {
		m := greeting.FindStringSubmatch(line)
		if m == nil || m[1] != names[i] {
			t.Errorf("line %q, want a greeting of %s", line, names[i])
			continue
		}
		for _, d := range m[2:] {
			if int(d[0]-'0') > len(names[i]) {
				t.Errorf("line %q: lucky number %s above max_value %d", line, d, len(names[i]))
			}
		}
	}
}

func localChain(t *testing.T, chainlets ...any) *chains.Dep[HelloAllInput, string] {
	t.Helper()
	c, err := chains.New(chainlets...)
	if err != nil {
		t.Fatal(err)
	}
	d, err := chains.RunLocal[HelloAllInput, string](c, chains.LocalOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return &d
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestLocal(t *testing.T) {
	hello := localChain(t, Chainlets(2)...)
	names := []string{"Marius", "Sid", "Bola"}
	got, err := hello.RunRemote(testContext(t), HelloAllInput{Names: names})
	if err != nil {
		t.Fatal(err)
	}
	checkGreetings(t, got, names)
	_, err = hello.RunRemote(testContext(t), HelloAllInput{Names: []string{"Ann", ""}})
	var re *chains.RemoteError
	if !errors.As(err, &re) || re.Root().Chainlet != "RandInt" || re.Root().Detail.ExceptionMessage != "max_value must be at least 1, got 0" {
		t.Errorf("error %v, want RandInt's ValueError at the root", err)
	}
}

// fakeSayHello is the mock the seeds' local run uses in place of a Chainlet.
type fakeSayHello struct{}

func (fakeSayHello) RunRemote(_ context.Context, in SayHelloInput) (string, error) {
	return "Hi " + in.Name, nil
}

func TestLocalWithMock(t *testing.T) {
	hello := localChain(t, &HelloAll{SayHello: chains.Mock[SayHelloInput, string](fakeSayHello{})}, &SayHello{}, &RandInt{})
	got, err := hello.RunRemote(testContext(t), HelloAllInput{Names: []string{"a", "b"}})
	if err != nil || got != "Hi a\nHi b" {
		t.Errorf("RunRemote = %q, %v; want the mock's greetings", got, err)
	}
}

// apiKey is the Chain's API key in the end-to-end test.
const apiKey = "test-chain-key"

// chainProcess is one Chainlet served by the hello binary.
type chainProcess struct {
	name string
	url  string
	cmd  *exec.Cmd
	log  *os.File
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestEndToEnd runs HelloAll, SayHello and RandInt as three processes on
// loopback wired by a dynamic Chainlet config: RandInt fails its first two
// calls (SayHello retries), an empty name raises a ValueError in RandInt
// that comes back through two Chainlets, and Python's requests and
// msgpack_numpy act as the outside clients.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary and starts processes")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	names := []string{"HelloAll", "SayHello", "RandInt"}
	procs := map[string]*chainProcess{}
	config := map[string]map[string]string{}
	for _, n := range names {
		port := freePort(t)
		procs[n] = &chainProcess{name: n, url: fmt.Sprintf("http://127.0.0.1:%d%s", port, chains.PredictPath)}
		config[n] = map[string]string{"predict_url": procs[n].url}
		procs[n].cmd = exec.Command(bin, "--chainlet", n, "--host", "127.0.0.1", "--port", fmt.Sprint(port),
			"--dynamic-config", filepath.Join(dir, "dynamic_chainlet_config"), "--api-key-file", filepath.Join(dir, "api_key"), "--require-api-key", "--log-format", "text")
	}
	data, _ := json.Marshal(config)
	if err := os.WriteFile(filepath.Join(dir, "dynamic_chainlet_config"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "api_key"), []byte(apiKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		p := procs[n]
		p.cmd.Env = append(os.Environ(), "HELLO_RANDINT_FAIL_FIRST=2")
		if p.log, err = os.Create(filepath.Join(dir, n+".log")); err != nil {
			t.Fatal(err)
		}
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			p.cmd.Process.Signal(os.Interrupt)
			p.cmd.Wait()
			p.log.Close()
			if t.Failed() {
				b, _ := os.ReadFile(p.log.Name())
				t.Logf("%s log:\n%s", p.name, b)
			}
		})
	}
	httpClient := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(httpClient.CloseIdleConnections)
	for _, n := range names {
		waitReady(t, httpClient, procs[n].url)
	}

	// Go client: the seeds' payload, through two transient RandInt failures.
	// Every Chainlet requires the Chain's API key, which they send each
	// other; so must the clients.
	resp, err := httpClient.Post(procs["HelloAll"].url, "application/json", strings.NewReader(`{"names": ["x"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("predict without the API key: %d, want 401", resp.StatusCode)
	}
	hello := chains.NewClient[HelloAllInput, string]("HelloAll", chains.Endpoint{URL: procs["HelloAll"].url}, chains.DepOptions{}, apiKey)
	t.Cleanup(hello.CloseIdleConnections)
	seedNames := []string{"Marius", "Sid", "Bola"}
	got, err := hello.RunRemote(testContext(t), HelloAllInput{Names: seedNames})
	if err != nil {
		t.Fatal(err)
	}
	checkGreetings(t, got, seedNames)
	metrics := get(t, httpClient, strings.TrimSuffix(procs["SayHello"].url, chains.PredictPath)+"/metrics")
	if !strings.Contains(metrics, `dependency_chainlet_requests_total{dependency_chainlet="RandInt"} 5`) {
		t.Errorf("SayHello sent other than 3 calls + 2 retries to RandInt:\n%s", metrics)
	}

	// Go client: a root error three Chainlets down.
	_, goErr := hello.RunRemote(testContext(t), HelloAllInput{Names: []string{"Marius", ""}})
	var re *chains.RemoteError
	if !errors.As(goErr, &re) {
		t.Fatalf("error %v, want a *RemoteError", goErr)
	}
	var chain []string
	for e := re; e != nil; {
		chain = append(chain, e.Chainlet+":"+e.ClassName())
		e, _ = e.Unwrap().(*chains.RemoteError)
	}
	if strings.Join(chain, " ") != "HelloAll:ValueError SayHello:ValueError RandInt:ValueError" {
		t.Errorf("remote error chain %v", chain)
	}
	for _, want := range []string{
		"├─ Error calling dependency Chainlet `HelloAll`, HTTP status=500",
		"│   ├─ Error calling dependency Chainlet `SayHello`, HTTP status=500",
		"│   │   ├─ Error calling dependency Chainlet `RandInt`, HTTP status=500",
		"in (*SayHello).RunRemote\n│   │       nums, err := s.RandInt.RunRemote(ctx, RandIntInput{MaxValue: len(in.Name), Count: 3})",
		"in validateMaxValue\n│   │   │       return chains.ValueError(\"max_value must be at least 1, got %d\", v)\n│   │   │   ValueError: max_value must be at least 1, got 0\n│   │   ╰   (Exception class defined in `builtins`.)",
	} {
		if !strings.Contains(goErr.Error(), want) {
			t.Errorf("error tree lacks %q:\n%s", want, goErr)
		}
	}

	// Python: requests with the seeds' JSON payload, Truss's error reading,
	// msgpack_numpy against RandInt.
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import requests, msgpack_numpy").Run(); err != nil {
		if os.Getenv("MODELSERVER_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s lacks requests or msgpack_numpy (apt-get install python3-requests python3-msgpack-numpy)", python)
		}
		t.Skipf("%s lacks requests or msgpack_numpy", python)
	}
	out, err := exec.Command(python, "testdata/truss_client.py", procs["HelloAll"].url, procs["RandInt"].url, apiKey).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("python: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var py struct {
		HelloStatus        int      `json:"hello_status"`
		Hello              string   `json:"hello"`
		HelloChunked       bool     `json:"hello_chunked"`
		ErrorStatus        int      `json:"error_status"`
		ErrorHeaders       []string `json:"error_headers"`
		RaisedClass        string   `json:"raised_class"`
		RaisedMessage      string   `json:"raised_message"`
		RandIntContentType string   `json:"randint_content_type"`
		RandInt            struct {
			DType  string  `json:"dtype"`
			Shape  []int   `json:"shape"`
			Values []int64 `json:"values"`
		} `json:"randint"`
	}
	if err := json.Unmarshal(out, &py); err != nil {
		t.Fatalf("python output %s: %v", out, err)
	}
	if py.HelloStatus != 200 || py.HelloChunked {
		t.Errorf("python POST: status %d chunked %v", py.HelloStatus, py.HelloChunked)
	}
	checkGreetings(t, py.Hello, seedNames)
	if py.ErrorStatus != 500 || strings.Join(py.ErrorHeaders, ",") != "04,600" || py.RaisedClass != "ValueError" {
		t.Errorf("python error: status %d headers %v class %s", py.ErrorStatus, py.ErrorHeaders, py.RaisedClass)
	}
	if py.RaisedMessage != goErr.Error() {
		t.Errorf("Python's re-raised message differs from the Go client's error.\npython:\n%s\ngo:\n%s", py.RaisedMessage, goErr)
	}
	if py.RandIntContentType != "application/octet-stream" || py.RandInt.DType != "int64" || len(py.RandInt.Shape) != 1 || py.RandInt.Shape[0] != 4 {
		t.Errorf("RandInt via msgpack_numpy: %s %+v", py.RandIntContentType, py.RandInt)
	}
	for _, v := range py.RandInt.Values {
		if v < 1 || v > 6 {
			t.Errorf("RandInt value %d outside [1, 6]", v)
		}
	}
}

func waitReady(t *testing.T, c *http.Client, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get(url) // GET of :predict answers readiness, as Truss
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", url)
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
