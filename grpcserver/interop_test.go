package grpcserver

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/modelserver/modelserver/proto/inferencepb"
)

// findGrpcurl returns the grpcurl binary from PATH or $(go env GOPATH)/bin.
// Without it the interop test skips, unless MODELSERVER_REQUIRE_INTEROP=1
// makes that a failure. Install it with
//
//	go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
func findGrpcurl(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "grpcurl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "grpcurl not found on PATH or in $(go env GOPATH)/bin; go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4"
	if os.Getenv("MODELSERVER_REQUIRE_INTEROP") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestGrpcurlInterop drives the server with grpcurl, a client nobody in this
// project wrote, which knows the service only through reflection.
func TestGrpcurlInterop(t *testing.T) {
	grpcurl := findGrpcurl(t)
	ctx := testContext(t)
	ts := startServer(t, Options{ServerVersion: "0.1.0"}, &Model{Name: "mixed", Signature: mixedSignature, Predictor: mixedFake})
	run := func(data string, args ...string) (string, string, error) {
		t.Helper()
		all := []string{"-plaintext", "-max-time", "30"}
		if data != "" {
			all = append(all, "-d", "@")
		}
		all = append(all, ts.addr)
		cmd := exec.CommandContext(ctx, grpcurl, append(all, args...)...)
		cmd.Stdin = strings.NewReader(data)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	mustRun := func(data string, args ...string) string {
		t.Helper()
		out, stderr, err := run(data, args...)
		if err != nil {
			t.Fatalf("grpcurl %v: %v\n%s%s", args, err, out, stderr)
		}
		return out
	}

	services := mustRun("", "list")
	for _, want := range []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "inference.GRPCInferenceService"} {
		if !strings.Contains(services, want+"\n") {
			t.Errorf("grpcurl list = %q, missing %s", services, want)
		}
	}
	desc := mustRun("", "describe", "inference.GRPCInferenceService")
	for _, want := range []string{
		"rpc ModelInfer ( .inference.ModelInferRequest ) returns ( .inference.ModelInferResponse );",
		"rpc ModelStreamInfer ( stream .inference.ModelInferRequest ) returns ( stream .inference.ModelStreamInferResponse );",
	} {
		if !strings.Contains(desc, want) {
			t.Errorf("grpcurl describe = %s\nmissing %s", desc, want)
		}
	}
	if out := mustRun("", "describe", "inference.InferTensorContents"); !strings.Contains(out, "repeated float fp32_contents = 6;") {
		t.Errorf("grpcurl describe inference.InferTensorContents = %s", out)
	}
	if out := mustRun("", "grpc.health.v1.Health/Check"); !strings.Contains(out, `"status": "SERVING"`) {
		t.Errorf("health Check = %s", out)
	}
	if out := mustRun(`{"name":"mixed"}`, "inference.GRPCInferenceService/ModelReady"); !strings.Contains(out, `"ready": true`) {
		t.Errorf("ModelReady = %s", out)
	}

	// Typed contents in, raw contents out.
	typed := `{"model_name":"mixed","id":"curl","inputs":[
		{"name":"a","datatype":"FP32","shape":[2,4],"contents":{"fp32_contents":[1,-2,0.5,3,-1,2,0,4]}},
		{"name":"b","datatype":"INT64","shape":[2,4],"contents":{"int64_contents":[1,2,3,4,10,20,30,40]}},
		{"name":"flag","datatype":"BOOL","shape":[2,1],"contents":{"bool_contents":[true,false]}}]}`
	checkMixed := func(name, out string) {
		t.Helper()
		var resp pb.ModelInferResponse
		if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("%s: grpcurl output %s: %v", name, out, err)
		}
		if resp.Id != "curl" || len(resp.Outputs) != 4 || len(resp.RawOutputContents) != 4 {
			t.Fatalf("%s: response = %v", name, &resp)
		}
		for i, o := range resp.Outputs {
			if !bytes.Equal(resp.RawOutputContents[i], mixedWant[o.Name]) {
				t.Errorf("%s: output %s = % x, want % x", name, o.Name, resp.RawOutputContents[i], mixedWant[o.Name])
			}
		}
	}
	checkMixed("typed", mustRun(typed, "inference.GRPCInferenceService/ModelInfer"))

	// Raw contents (bytes fields are base64 in JSON).
	req := mixedRequest("curl")
	raw := `{"model_name":"mixed","id":"curl","inputs":[
		{"name":"a","datatype":"FP32","shape":[2,4]},{"name":"b","datatype":"INT64","shape":[2,4]},{"name":"flag","datatype":"BOOL","shape":[2,1]}],
		"raw_input_contents":["` + base64.StdEncoding.EncodeToString(req.RawInputContents[0]) + `","` +
		base64.StdEncoding.EncodeToString(req.RawInputContents[1]) + `","` + base64.StdEncoding.EncodeToString(req.RawInputContents[2]) + `"]}`
	checkMixed("raw", mustRun(raw, "inference.GRPCInferenceService/ModelInfer"))

	// Errors come back as gRPC statuses.
	_, stderr, err := run(strings.Replace(typed, `"INT64"`, `"INT32"`, 1), "inference.GRPCInferenceService/ModelInfer")
	if err == nil || !strings.Contains(stderr, "Code: InvalidArgument") || !strings.Contains(stderr, `input \"b\"`) && !strings.Contains(stderr, `input "b"`) {
		t.Errorf("ModelInfer with a wrong datatype: err %v, stderr %s", err, stderr)
	}

	// Two requests on one bidirectional stream.
	out := mustRun(strings.Replace(typed, `"curl"`, `"s1"`, 1)+"\n"+strings.Replace(typed, `"curl"`, `"s2"`, 1),
		"inference.GRPCInferenceService/ModelStreamInfer")
	dec := strings.Count(out, `"triton_final_response"`)
	if dec != 2 || !strings.Contains(out, `"id": "s1"`) || !strings.Contains(out, `"id": "s2"`) {
		t.Errorf("ModelStreamInfer of two requests = %s", out)
	}
}
