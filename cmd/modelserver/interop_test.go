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
