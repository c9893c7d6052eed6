package engine

import (
	"encoding/json"
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelserver/modelserver/internal/onnxgen"
)

func TestExecutionOptions(t *testing.T) {
	tests := []struct {
		e        Execution
		str      string
		cuda     map[string]string
		tensorRT map[string]string
	}{
		{Execution{}, "cpu", map[string]string{"device_id": "0"}, map[string]string{"device_id": "0"}},
		{Execution{CUDA: true, DeviceID: 2}, "cuda:2", map[string]string{"device_id": "2"}, map[string]string{"device_id": "2"}},
		{
			Execution{CUDA: true, DeviceID: 1, TensorRT: true, GPUMemLimit: 20 << 30, ArenaExtendStrategy: "kSameAsRequested", TensorRTFP16: true, TensorRTCacheDir: "/tmp/trt"},
			"tensorrt+cuda:1",
			map[string]string{"device_id": "1", "gpu_mem_limit": "21474836480", "arena_extend_strategy": "kSameAsRequested"},
			map[string]string{"device_id": "1", "trt_fp16_enable": "1", "trt_engine_cache_enable": "1", "trt_engine_cache_path": "/tmp/trt"},
		},
	}
	for _, tt := range tests {
		if got := tt.e.String(); got != tt.str {
			t.Errorf("%+v.String() = %q, want %q", tt.e, got, tt.str)
		}
		if got := tt.e.cudaOptions(); !maps.Equal(got, tt.cuda) {
			t.Errorf("%+v.cudaOptions() = %v, want %v", tt.e, got, tt.cuda)
		}
		if got := tt.e.tensorRTOptions(); !maps.Equal(got, tt.tensorRT) {
			t.Errorf("%+v.tensorRTOptions() = %v, want %v", tt.e, got, tt.tensorRT)
		}
		if err := tt.e.Validate(); err != nil {
			t.Errorf("%+v.Validate() = %v", tt.e, err)
		}
	}
	for _, bad := range []Execution{{DeviceID: -1}, {GPUMemLimit: -1}, {ArenaExtendStrategy: "kDouble"}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v.Validate() = nil, want an error", bad)
		}
		if _, err := AppendProviders(nil, bad); err == nil {
			t.Errorf("AppendProviders(%+v) accepted invalid settings", bad)
		}
	}
}

func TestApplyMetadata(t *testing.T) {
	base := Execution{CUDA: true, DeviceID: 1}
	tests := []struct {
		name string
		meta map[string]any
		want Execution
		err  string
	}{
		{"no metadata", nil, base, ""},
		{"no section", map[string]any{"example": 1}, base, ""},
		{"null section", map[string]any{"onnxruntime": nil}, base, ""},
		{"everything", map[string]any{"onnxruntime": map[string]any{
			"tensorrt": true, "tensorrt_fp16": true, "tensorrt_cache_dir": "/tmp/c",
			"gpu_mem_limit_bytes": 1 << 30, "arena_extend_strategy": "kSameAsRequested",
		}}, Execution{CUDA: true, DeviceID: 1, TensorRT: true, TensorRTFP16: true, TensorRTCacheDir: "/tmp/c", GPUMemLimit: 1 << 30, ArenaExtendStrategy: "kSameAsRequested"}, ""},
		{"float bytes", map[string]any{"onnxruntime": map[string]any{"gpu_mem_limit_bytes": 2e9}}, Execution{CUDA: true, DeviceID: 1, GPUMemLimit: 2e9}, ""},
		{"uint64 bytes", map[string]any{"onnxruntime": map[string]any{"gpu_mem_limit_bytes": uint64(5)}}, Execution{CUDA: true, DeviceID: 1, GPUMemLimit: 5}, ""},
		{"typo", map[string]any{"onnxruntime": map[string]any{"tensor_rt": true}}, base, "tensor_rt is not a setting"},
		{"string bool", map[string]any{"onnxruntime": map[string]any{"tensorrt": "yes"}}, base, "tensorrt: want true or false"},
		{"fractional bytes", map[string]any{"onnxruntime": map[string]any{"gpu_mem_limit_bytes": 1.5}}, base, "whole number"},
		{"negative bytes", map[string]any{"onnxruntime": map[string]any{"gpu_mem_limit_bytes": -1}}, base, "negative"},
		{"bad strategy", map[string]any{"onnxruntime": map[string]any{"arena_extend_strategy": "grow"}}, base, "arena_extend_strategy"},
		{"not a mapping", map[string]any{"onnxruntime": "tensorrt"}, base, "must be a mapping"},
		{"number dir", map[string]any{"onnxruntime": map[string]any{"tensorrt_cache_dir": 3}}, base, "want a string"},
	}
	for _, tt := range tests {
		got, err := ApplyMetadata(base, tt.meta)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: ApplyMetadata = %+v, %v; want an error containing %q", tt.name, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: ApplyMetadata = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

// stubProviders replaces the runtime calls that add providers.
func stubProviders(t *testing.T, cudaErr, tensorRTErr error) *[]map[string]string {
	t.Helper()
	oldCUDA, oldTRT := appendCUDA, appendTensorRT
	t.Cleanup(func() { appendCUDA, appendTensorRT = oldCUDA, oldTRT })
	var calls []map[string]string
	appendCUDA = func(_ *ort.SessionOptions, o map[string]string) error { calls = append(calls, o); return cudaErr }
	appendTensorRT = func(_ *ort.SessionOptions, o map[string]string) error { calls = append(calls, o); return tensorRTErr }
	return &calls
}

func TestAppendProvidersOrder(t *testing.T) {
	missing := errors.New("libnvinfer.so.10: cannot open shared object file")
	tests := []struct {
		name          string
		e             Execution
		cudaErr, trt  error
		want          string
		wantTRTErr    bool
		wantErr       bool
		wantCallCount int
	}{
		{"cpu adds nothing", Execution{TensorRT: true}, nil, nil, "CPUExecutionProvider", false, false, 0},
		{"cuda", Execution{CUDA: true}, nil, nil, "CUDAExecutionProvider,CPUExecutionProvider", false, false, 1},
		{"tensorrt then cuda", Execution{CUDA: true, TensorRT: true}, nil, nil, "TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider", false, false, 2},
		{"tensorrt missing runs on cuda", Execution{CUDA: true, TensorRT: true}, nil, missing, "CUDAExecutionProvider,CPUExecutionProvider", true, false, 2},
		{"cuda missing fails", Execution{CUDA: true}, missing, nil, "", false, true, 1},
		{"both missing fails", Execution{CUDA: true, TensorRT: true}, missing, missing, "", false, true, 2},
	}
	for _, tt := range tests {
		calls := stubProviders(t, tt.cudaErr, tt.trt)
		p, err := AppendProviders(nil, tt.e)
		switch {
		case tt.wantErr:
			if !errors.Is(err, ErrProviderUnavailable) || !strings.Contains(err.Error(), "libnvinfer") || !strings.Contains(err.Error(), ProviderCUDA) {
				t.Errorf("%s: AppendProviders = %v, %v; want ErrProviderUnavailable naming the provider and cause", tt.name, p, err)
			}
		case err != nil || p.String() != tt.want || (p.TensorRTErr != nil) != tt.wantTRTErr:
			t.Errorf("%s: AppendProviders = %q (TensorRTErr %v), %v; want %q", tt.name, p, p.TensorRTErr, err, tt.want)
		case tt.wantTRTErr && !errors.Is(p.TensorRTErr, ErrProviderUnavailable):
			t.Errorf("%s: TensorRTErr %v does not wrap ErrProviderUnavailable", tt.name, p.TensorRTErr)
		}
		if len(*calls) != tt.wantCallCount {
			t.Errorf("%s: %d provider calls, want %d", tt.name, len(*calls), tt.wantCallCount)
		}
	}
	if p := (Providers{}); p.Primary() != ProviderCPU {
		t.Errorf("empty Providers.Primary() = %q", p.Primary())
	}
}

// TestCUDAProviderUnavailableOnCPURuntime runs against the CPU runtime that
// scripts/install-onnxruntime.sh installs: asking it for CUDA or TensorRT
// must fail with ErrProviderUnavailable (the provider libraries are not
// there), and the session options must still make a working CPU session.
func TestCUDAProviderUnavailableOnCPURuntime(t *testing.T) {
	if os.Getenv("MODELSERVER_TEST_CUDA_EP") == "1" {
		t.Skip("MODELSERVER_TEST_CUDA_EP=1: the runtime under test has the CUDA provider")
	}
	requireORT(t)
	so, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer so.Destroy()
	p, err := AppendProviders(so, Execution{CUDA: true, TensorRT: true})
	if !errors.Is(err, ErrProviderUnavailable) || !strings.Contains(err.Error(), ProviderCUDA) || !strings.Contains(err.Error(), ProviderTensorRT) {
		t.Fatalf("AppendProviders(cuda+tensorrt) on the CPU runtime = %v, %v; want ErrProviderUnavailable for both", p, err)
	}
	t.Logf("as expected: %v", err)

	cpu, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Destroy()
	if p, err := AppendProviders(cpu, Execution{}); err != nil || p.Primary() != ProviderCPU {
		t.Fatalf("AppendProviders(cpu) = %v, %v", p, err)
	}
	data, err := onnxgen.MLP(onnxgen.MLPOptions{Seed: 1, In: 4, Hidden: []int{8}, Classes: 3})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{"features"}, []string{"probabilities", "label"}, cpu)
	if err != nil {
		t.Fatalf("CPU session after a failed CUDA attempt: %v", err)
	}
	s.Destroy()

	// The profile reader that TestCUDAProviderRunsOnGPU relies on, on the CPU.
	data, err = onnxgen.MLP(onnxgen.MLPOptions{Seed: 7, In: 256, Hidden: []int{64}, Classes: 16})
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(t.TempDir(), "profile")
	runMLP(t, data, 2, make([]float32, 2*256), Execution{}, prefix)
	ran := providersInProfile(t, prefix)
	if ran[ProviderCPU] < 3 || matrixProducts(ran, ProviderCPU) != 2 {
		t.Errorf("profiled nodes per provider on the CPU: %v; want the MLP's nodes, two of them matrix products", ran)
	}
}

// TestCUDAProviderRunsOnGPU needs ONNX Runtime's GPU build (ONNXRUNTIME_LIB)
// and a GPU; scripts/gpu-verify.sh sets MODELSERVER_TEST_CUDA_EP=1 to run it.
// It profiles a session to see which provider ran each node, and compares the
// outputs with a CPU session.
func TestCUDAProviderRunsOnGPU(t *testing.T) {
	if os.Getenv("MODELSERVER_TEST_CUDA_EP") != "1" {
		t.Skip("set MODELSERVER_TEST_CUDA_EP=1 with ONNXRUNTIME_LIB pointing at ONNX Runtime's GPU build")
	}
	requireORT(t)
	data, err := onnxgen.MLP(onnxgen.MLPOptions{Seed: 7, In: 256, Hidden: []int{1024, 1024}, Classes: 16})
	if err != nil {
		t.Fatal(err)
	}
	const batch = 64
	x := make([]float32, batch*256)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	prefix := filepath.Join(t.TempDir(), "profile")
	gpu, p := runMLP(t, data, batch, x, Execution{CUDA: true}, prefix)
	cpu, _ := runMLP(t, data, batch, x, Execution{}, "")
	if p.Primary() != ProviderCUDA {
		t.Fatalf("providers %v, want CUDA first", p)
	}
	for i := range cpu {
		if d := math.Abs(float64(gpu[i] - cpu[i])); d > 1e-2 {
			t.Fatalf("probabilities[%d]: GPU %g, CPU %g", i, gpu[i], cpu[i])
		}
	}
	ran := providersInProfile(t, prefix)
	t.Logf("nodes per provider: %v", ran)
	if ran[ProviderCUDA] == 0 {
		t.Fatalf("no node ran on %s: %v", ProviderCUDA, ran)
	}
	if matrixProducts(ran, ProviderCUDA) == 0 || matrixProducts(ran, ProviderCPU) > 0 {
		t.Errorf("the matrix products did not all run on %s: %v", ProviderCUDA, ran)
	}
}

// runMLP runs an onnxgen.MLP with 256 features once on e, profiling into
// files starting with profile when it is not empty.
func runMLP(t *testing.T, data []byte, batch int64, x []float32, e Execution, profile string) ([]float32, Providers) {
	t.Helper()
	so, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer so.Destroy()
	p, err := AppendProviders(so, e)
	if err != nil {
		t.Fatal(err)
	}
	if profile != "" {
		if err := so.EnableProfiling(profile); err != nil {
			t.Fatal(err)
		}
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{"features"}, []string{"probabilities", "label"}, so)
	if err != nil {
		t.Fatalf("session on %v: %v", e, err)
	}
	in, err := ort.NewTensor(ort.NewShape(batch, 256), x)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	out := []ort.Value{nil, nil}
	if err := s.Run([]ort.Value{in}, out); err != nil {
		t.Fatalf("run on %v: %v", e, err)
	}
	probs := append([]float32(nil), out[0].(*ort.Tensor[float32]).GetData()...)
	for _, v := range out {
		v.Destroy()
	}
	s.Destroy() // writes the profile
	return probs, p
}

// matrixProducts counts the MatMul and Gemm nodes (fused or not) that ran on
// provider.
func matrixProducts(ran map[string]int, provider string) int {
	n := 0
	for k, c := range ran {
		op, p, _ := strings.Cut(k, "@")
		if p == provider && (strings.Contains(op, "MatMul") || strings.Contains(op, "Gemm")) {
			n += c
		}
	}
	return n
}

// providersInProfile counts the profiled nodes per provider (and per
// op@provider) in the profile file ONNX Runtime wrote for prefix.
func providersInProfile(t *testing.T, prefix string) map[string]int {
	t.Helper()
	files, _ := filepath.Glob(prefix + "*.json")
	if len(files) != 1 {
		t.Fatalf("want one profile file for %s, found %v", prefix, files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var events []struct {
		Cat  string `json:"cat"`
		Name string `json:"name"`
		Args struct {
			OpName   string `json:"op_name"`
			Provider string `json:"provider"`
		} `json:"args"`
	}
	if err := json.Unmarshal(raw, &events); err != nil {
		t.Fatalf("profile %s: %v", files[0], err)
	}
	counts := map[string]int{}
	for _, e := range events {
		if e.Cat == "Node" && strings.HasSuffix(e.Name, "_kernel_time") && e.Args.Provider != "" {
			counts[e.Args.Provider]++
			counts[e.Args.OpName+"@"+e.Args.Provider]++
		}
	}
	return counts
}
