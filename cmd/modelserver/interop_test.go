package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/modelserver/modelserver/internal/onnxgen"
)

// TestPythonMsgpackNumpyInterop sends numpy arrays of every dtype from
// Debian's python3-msgpack-numpy (the version Truss pins) to a running
// modelserver serving an identity model, and checks the answers bit for bit.
func TestPythonMsgpackNumpyInterop(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import msgpack, msgpack_numpy, numpy").Run(); err != nil {
		if os.Getenv("MODELSERVER_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s lacks msgpack_numpy or numpy (apt-get install python3-msgpack-numpy): %v", python, err)
		}
		t.Skipf("%s lacks msgpack_numpy or numpy; apt-get install python3-msgpack-numpy", python)
	}
	model, err := onnxgen.IdentityAllDTypes()
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--model", writeModelDir(t, "model_name: identity\n", model))

	resp, err := http.Get(s.url + "/v1/models/model/schema")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Input struct {
			Properties map[string]struct {
				DType string `json:"dtype"`
			} `json:"properties"`
		} `json:"input_schema"`
	}
	err = json.NewDecoder(resp.Body).Decode(&schema)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var dtypes []string
	for name, p := range schema.Input.Properties {
		if strings.HasPrefix(name, "x_") && name != "x_scalar" {
			dtypes = append(dtypes, p.DType)
		}
	}
	sort.Strings(dtypes)
	want := []string{"bfloat16", "bool", "float16", "float32", "float64", "int16", "int32", "int64", "int8", "uint16", "uint32", "uint64", "uint8"}
	if strings.Join(dtypes, " ") != strings.Join(want, " ") {
		t.Fatalf("identity model takes %v, want at least %v", dtypes, want)
	}
	out, err := exec.Command(python, append([]string{"testdata/interop_client.py", s.url}, dtypes...)...).CombinedOutput()
	t.Logf("python client:\n%s", out)
	if err != nil {
		t.Fatalf("python client failed: %v", err)
	}
}

// TestStreamingInterop streams the built-in rnn-stream model to Debian's
// python3-requests (chunked and SSE) and python3-websockets, and to curl.
func TestStreamingInterop(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import msgpack, requests, websockets").Run(); err != nil {
		if os.Getenv("MODELSERVER_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s lacks requests or websockets (apt-get install python3-requests python3-websockets): %v", python, err)
		}
		t.Skipf("%s lacks requests or websockets; apt-get install python3-requests python3-websockets", python)
	}
	s := startServer(t, "--model", "rnn-stream")
	out, err := exec.Command(python, "testdata/stream_client.py", s.url, "5").CombinedOutput()
	t.Logf("python client:\n%s", out)
	if err != nil {
		t.Fatalf("python streaming client failed: %v", err)
	}

	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	body := `{"x": [[[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1], [0, 0, 0, 0, 0, 0, 0, 0]]]}`
	sse, err := exec.Command(curl, "-sSN", "-H", "Accept: text/event-stream", "--data", body, s.url+"/v1/models/model:predict").Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	if n := strings.Count(string(sse), "data: {"); n != 3 {
		t.Errorf("curl -N got %d SSE events, want 3:\n%s", n, sse)
	}
}

// TestGRPCStreamInteropNode drives ModelStreamInfer on the rnn-stream model
// from @grpc/grpc-js (installed under testdata/node by scripts/test.sh).
func TestGRPCStreamInteropNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if _, statErr := os.Stat("testdata/node/node_modules/@grpc/grpc-js"); err != nil || statErr != nil {
		if os.Getenv("MODELSERVER_REQUIRE_INTEROP") == "1" {
			t.Fatalf("node or @grpc/grpc-js missing (npm ci --prefix cmd/modelserver/testdata/node): %v %v", err, statErr)
		}
		t.Skip("node or @grpc/grpc-js missing; run npm ci --prefix cmd/modelserver/testdata/node")
	}
	s := startServer(t, "--model", "rnn-stream")
	out, err := exec.Command(node, "testdata/node/grpc_stream_client.mjs", s.grpc, "../../proto/inferencepb/grpc_service.proto", "6").CombinedOutput()
	t.Logf("grpc-js client:\n%s", out)
	if err != nil {
		t.Fatalf("grpc-js client failed: %v", err)
	}
}
