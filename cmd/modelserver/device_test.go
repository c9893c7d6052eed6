package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/modelserver/modelserver/internal/onnxgen"
)

// TestDeviceFlag checks the --device rules of a binary built without the
// cuda tag: auto serves on the CPU and says why, cuda fails with the
// reason, and config.yaml's accelerator and onnxruntime settings are read.
func TestDeviceFlag(t *testing.T) {
	s := startServer(t, "--device", "auto", "--log-format", "text")
	if log := s.stderr.String(); !strings.Contains(log, `msg="running on the CPU"`) || !strings.Contains(log, "built without CUDA support") ||
		!strings.Contains(log, "providers=CPUExecutionProvider") {
		t.Errorf("--device auto log does not say it runs on the CPU and why: %s", log)
	}

	model, err := onnxgen.MixedFixture()
	if err != nil {
		t.Fatal(err)
	}
	dir := writeModelDir(t, "model_name: x\nresources:\n  accelerator: H100:2\n", model)
	s = startServer(t, "--model", dir, "--device", "cpu")
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(metrics, []byte(`modelserver_gpu_requested{accelerator="H100"} 2`)) {
		t.Errorf("/metrics does not report the requested accelerator")
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--device", "cuda"}, "--device cuda: cuda: no CUDA device available: this modelserver was built without CUDA support"},
		{[]string{"--device", "cuda:1"}, "--device cuda:1: cuda: no CUDA device available"},
		{[]string{"--device", "tpu"}, `unknown device "tpu"`},
		{[]string{"--model", writeModelDir(t, "model_name: x\nresources:\n  accelerator: H100:x\n", model)}, "resources.accelerator"},
		{[]string{"--model", writeModelDir(t, "model_name: x\nmodel_metadata:\n  onnxruntime:\n    tensor_rt: true\n", model)}, "tensor_rt is not a setting"},
	} {
		cmd := exec.Command(serverBinary, append([]string{"--host", "127.0.0.1", "--port", fmt.Sprint(freePort(t))}, tt.args...)...)
		cmd.Env = append(os.Environ(), "ONNXRUNTIME_LIB="+ortLibrary(t))
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tt.want) {
			t.Errorf("modelserver %v = %v; want a failure containing %q; output: %s", tt.args, err, tt.want, out)
		}
	}
}
