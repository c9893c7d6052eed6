// Package testbin runs the real modelserver binary for tests outside
// cmd/modelserver (Chains calling a model Chainlet, for example): it builds
// the command, starts it on a free loopback port and waits until it is
// ready. The process is stopped with SIGINT when the test ends, and its log
// is reported when the test failed.
package testbin

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelserver/modelserver/internal/syncbuf"

	"github.com/modelserver/modelserver/internal/testort"
)

// ReadyTimeout bounds the wait for readiness, model load included.
const ReadyTimeout = 90 * time.Second

// Modelserver builds and starts modelserver with args after its listen
// and ONNX Runtime flags, waits for readiness and returns its base URL
// ("http://127.0.0.1:PORT"). It skips like testort when ONNX Runtime is
// unusable, and fails the test with the server's log when it exits before
// it is ready.
func Modelserver(t testing.TB, args ...string) string {
	t.Helper()
	lib := testort.Library(t)
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH to build modelserver")
	}
	bin := filepath.Join(t.TempDir(), "modelserver")
	build := exec.Command(goTool, "build", "-o", bin, "github.com/modelserver/modelserver/cmd/modelserver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building modelserver: %v\n%s", err, out)
	}
	port := freePort(t)
	cmd := exec.Command(bin, append([]string{"--host", "127.0.0.1", "--port", fmt.Sprint(port), "--grpc-port", "0",
		"--onnxruntime-lib", lib, "--log-format", "text"}, args...)...)
	log := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		<-exited
		if t.Failed() {
			t.Logf("modelserver log:\n%s", log.String())
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	if !waitReady(url+"/v1/models/model", exited) {
		t.Fatalf("modelserver %v did not become ready:\n%s", args, log.String())
	}
	return url
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitReady polls the readiness route until it answers 200; false when the
// process exits first or ReadyTimeout passes.
func waitReady(url string, exited <-chan struct{}) bool {
	c := &http.Client{Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	for deadline := time.Now().Add(ReadyTimeout); time.Now().Before(deadline); {
		select {
		case <-exited:
			return false
		case <-time.After(50 * time.Millisecond):
		}
		if resp, err := c.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
	}
	return false
}
