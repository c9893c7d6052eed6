package engine

import (
	"errors"
	"os"
	"testing"

	"github.com/modelserver/modelserver/internal/onnxgen"
)

// TestLoadONNXExecution: a CPU model reports the CPU provider, and on the CPU
// runtime asking for CUDA fails the load with ErrProviderUnavailable.
func TestLoadONNXExecution(t *testing.T) {
	requireORT(t)
	data, err := onnxgen.MLP(onnxgen.MLPOptions{Seed: 1, In: 4, Hidden: []int{8}, Classes: 3})
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadONNXBytes(data, ONNXOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Providers().String(); got != ProviderCPU {
		t.Errorf("Providers() = %q, want %s", got, ProviderCPU)
	}
	m.Close()
	if os.Getenv("MODELSERVER_TEST_CUDA_EP") == "1" {
		return
	}
	if m, err := LoadONNXBytes(data, ONNXOptions{Execution: Execution{CUDA: true}}); !errors.Is(err, ErrProviderUnavailable) {
		t.Errorf("LoadONNXBytes(cuda) on the CPU runtime = %v, %v; want ErrProviderUnavailable", m, err)
	}
}
