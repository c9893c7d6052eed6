package inferencepb_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/modelserver/modelserver/proto/inferencepb"
)

// published lists every field of the published messages as
// kserve/open-inference-protocol open_inference_grpc.proto and Triton's
// grpc_service.proto define them: message full name -> field name ->
// number. A renamed or renumbered field breaks every existing client.
var published = map[string]map[string]protoreflect.FieldNumber{
	"inference.ServerLiveResponse":     {"live": 1},
	"inference.ServerReadyResponse":    {"ready": 1},
	"inference.ModelReadyRequest":      {"name": 1, "version": 2},
	"inference.ModelReadyResponse":     {"ready": 1},
	"inference.ServerMetadataResponse": {"name": 1, "version": 2, "extensions": 3},
	"inference.ModelMetadataRequest":   {"name": 1, "version": 2},
	"inference.ModelMetadataResponse": {
		"name": 1, "versions": 2, "platform": 3, "inputs": 4, "outputs": 5,
	},
	"inference.ModelMetadataResponse.TensorMetadata": {"name": 1, "datatype": 2, "shape": 3},
	"inference.InferParameter": {
		"bool_param": 1, "int64_param": 2, "string_param": 3, "double_param": 4, "uint64_param": 5,
	},
	"inference.InferTensorContents": {
		"bool_contents": 1, "int_contents": 2, "int64_contents": 3, "uint_contents": 4,
		"uint64_contents": 5, "fp32_contents": 6, "fp64_contents": 7, "bytes_contents": 8,
	},
	"inference.ModelInferRequest": {
		"model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "inputs": 5, "outputs": 6, "raw_input_contents": 7,
	},
	"inference.ModelInferRequest.InferInputTensor": {
		"name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5,
	},
	"inference.ModelInferRequest.InferRequestedOutputTensor": {"name": 1, "parameters": 2},
	"inference.ModelInferResponse": {
		"model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "outputs": 5, "raw_output_contents": 6,
	},
	"inference.ModelInferResponse.InferOutputTensor": {
		"name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5,
	},
	"inference.ModelStreamInferResponse": {"error_message": 1, "infer_response": 2},
	"inference.ServerLiveRequest":        {},
	"inference.ServerReadyRequest":       {},
	"inference.ServerMetadataRequest":    {},
}

func TestFieldNumbersMatchPublishedProto(t *testing.T) {
	fd := pb.File_grpc_service_proto
	if got := fd.Package(); got != "inference" {
		t.Fatalf("package = %q, want inference", got)
	}
	seen := map[string]bool{}
	var walk func(protoreflect.MessageDescriptors)
	walk = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			md := ms.Get(i)
			if md.IsMapEntry() {
				continue
			}
			name := string(md.FullName())
			seen[name] = true
			want, ok := published[name]
			if !ok {
				t.Errorf("message %s is not in the published protocol", name)
				continue
			}
			fields := md.Fields()
			if fields.Len() != len(want) {
				t.Errorf("%s has %d fields, the published one %d", name, fields.Len(), len(want))
			}
			for j := range fields.Len() {
				f := fields.Get(j)
				if n, ok := want[string(f.Name())]; !ok || n != f.Number() {
					t.Errorf("%s.%s = %d, want %d (present in spec: %v)", name, f.Name(), f.Number(), n, ok)
				}
			}
			walk(md.Messages())
		}
	}
	walk(fd.Messages())
	for name := range published {
		if !seen[name] {
			t.Errorf("published message %s is missing", name)
		}
	}
}

func TestServiceMatchesPublishedProto(t *testing.T) {
	sd := pb.File_grpc_service_proto.Services().ByName("GRPCInferenceService")
	if sd == nil {
		t.Fatal("service GRPCInferenceService missing")
	}
	if got, want := sd.FullName(), protoreflect.FullName("inference.GRPCInferenceService"); got != want {
		t.Errorf("service = %s, want %s", got, want)
	}
	want := []struct {
		name, in, out              string
		clientStream, serverStream bool
	}{
		{"ServerLive", "ServerLiveRequest", "ServerLiveResponse", false, false},
		{"ServerReady", "ServerReadyRequest", "ServerReadyResponse", false, false},
		{"ModelReady", "ModelReadyRequest", "ModelReadyResponse", false, false},
		{"ServerMetadata", "ServerMetadataRequest", "ServerMetadataResponse", false, false},
		{"ModelMetadata", "ModelMetadataRequest", "ModelMetadataResponse", false, false},
		{"ModelInfer", "ModelInferRequest", "ModelInferResponse", false, false},
		{"ModelStreamInfer", "ModelInferRequest", "ModelStreamInferResponse", true, true},
	}
	if sd.Methods().Len() != len(want) {
		t.Errorf("service has %d methods, want %d", sd.Methods().Len(), len(want))
	}
	for _, w := range want {
		m := sd.Methods().ByName(protoreflect.Name(w.name))
		if m == nil {
			t.Errorf("method %s missing", w.name)
			continue
		}
		if string(m.Input().Name()) != w.in || string(m.Output().Name()) != w.out ||
			m.IsStreamingClient() != w.clientStream || m.IsStreamingServer() != w.serverStream {
			t.Errorf("%s(%s stream=%v) returns (%s stream=%v), want %s(%s stream=%v) returns (%s stream=%v)",
				w.name, m.Input().Name(), m.IsStreamingClient(), m.Output().Name(), m.IsStreamingServer(),
				w.name, w.in, w.clientStream, w.out, w.serverStream)
		}
	}
	if got := pb.GRPCInferenceService_ModelInfer_FullMethodName; got != "/inference.GRPCInferenceService/ModelInfer" {
		t.Errorf("ModelInfer full method = %q", got)
	}
}

// versionLine matches the generated header lines naming the tool versions;
// a different protoc build may differ there without changing the code.
var versionLine = regexp.MustCompile(`(?m)^// (\t| -) ?protoc +v.*$`)

// skip skips a test that needs protoc, unless MODELSERVER_REQUIRE_PROTOC=1
// (CI) makes a missing tool a failure.
func skip(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("MODELSERVER_REQUIRE_PROTOC") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// TestGeneratedCodeIsCurrent regenerates the Go code into a temporary
// directory and compares it with the checked-in files. It skips when protoc
// or the plugins are not installed (see doc.go for the install lines).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		skip(t, "protoc not installed (Debian: protobuf-compiler)")
	}
	env := os.Environ()
	path := os.Getenv("PATH")
	if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		path += string(os.PathListSeparator) + filepath.Join(string(bytes.TrimSpace(gopath)), "bin")
	}
	for _, plugin := range []string{"protoc-gen-go", "protoc-gen-go-grpc"} {
		found := false
		for _, dir := range filepath.SplitList(path) {
			if _, err := os.Stat(filepath.Join(dir, plugin)); err == nil {
				found = true
			}
		}
		if !found {
			skip(t, plugin+" not installed; see doc.go")
		}
	}
	out := t.TempDir()
	cmd := exec.Command(protoc, "--proto_path=.", "--go_out="+out, "--go_opt=paths=source_relative",
		"--go-grpc_out="+out, "--go-grpc_opt=paths=source_relative", "grpc_service.proto")
	cmd.Env = append(env, "PATH="+path)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	for _, name := range []string{"grpc_service.pb.go", "grpc_service_grpc.pb.go"} {
		want, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(versionLine.ReplaceAll(got, nil), versionLine.ReplaceAll(want, nil)) {
			t.Errorf("%s differs from what protoc generates now; run go generate ./proto/...", name)
		}
	}
}
