package cudametrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelserver/modelserver/cuda"
)

type fakeGPU struct {
	dev    cuda.Device
	report cuda.MemoryReport
	err    error
	delay  time.Duration
}

func (f *fakeGPU) Device() cuda.Device { return f.dev }

func (f *fakeGPU) MemoryReport(ctx context.Context) (cuda.MemoryReport, error) {
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return cuda.MemoryReport{Stats: f.report.Stats}, ctx.Err()
	}
	return f.report, f.err
}

func TestCollector(t *testing.T) {
	h100 := &fakeGPU{
		dev: cuda.Device{Index: 0, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-1234", ComputeCapability: 90, TotalMemory: 80e9},
		report: cuda.MemoryReport{Free: 60e9, Total: 80e9,
			Stats: cuda.MemStats{DeviceBytes: 1 << 30, PeakDeviceBytes: 2 << 30, PinnedBytes: 1 << 20}},
	}
	busy := &fakeGPU{
		dev:    cuda.Device{Index: 1, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-5678", ComputeCapability: 90, TotalMemory: 80e9},
		report: cuda.MemoryReport{Stats: cuda.MemStats{DeviceBytes: 5}},
		delay:  time.Hour,
	}
	c := New(cuda.Accelerator{Type: "H100", Count: 2}, h100, busy)
	c.timeout = 50 * time.Millisecond
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	want := `
# HELP modelserver_gpu_info A GPU modelserver uses (value 1), with its name, UUID and compute capability.
# TYPE modelserver_gpu_info gauge
modelserver_gpu_info{compute_capability="9.0",device="cuda:0",name="NVIDIA H100 80GB HBM3",uuid="GPU-1234"} 1
modelserver_gpu_info{compute_capability="9.0",device="cuda:1",name="NVIDIA H100 80GB HBM3",uuid="GPU-5678"} 1
# HELP modelserver_gpu_memory_free_bytes Free device memory as the driver reports it (all processes counted).
# TYPE modelserver_gpu_memory_free_bytes gauge
modelserver_gpu_memory_free_bytes{device="cuda:0"} 6e+10
# HELP modelserver_gpu_memory_query_errors_total Scrapes that could not read a GPU's memory in time (its worker was busy or stopped).
# TYPE modelserver_gpu_memory_query_errors_total counter
modelserver_gpu_memory_query_errors_total{device="cuda:1"} 1
# HELP modelserver_gpu_memory_total_bytes Device memory of the GPU.
# TYPE modelserver_gpu_memory_total_bytes gauge
modelserver_gpu_memory_total_bytes{device="cuda:0"} 8e+10
modelserver_gpu_memory_total_bytes{device="cuda:1"} 8e+10
# HELP modelserver_gpu_memory_used_bytes Device memory in use: total minus free, ONNX Runtime's arena and other processes included.
# TYPE modelserver_gpu_memory_used_bytes gauge
modelserver_gpu_memory_used_bytes{device="cuda:0"} 2e+10
# HELP modelserver_gpu_requested GPUs config.yaml's resources.accelerator asks for, by type.
# TYPE modelserver_gpu_requested gauge
modelserver_gpu_requested{accelerator="H100"} 2
# HELP modelserver_gpu_worker_allocated_bytes Device memory allocated by modelserver's CUDA worker itself.
# TYPE modelserver_gpu_worker_allocated_bytes gauge
modelserver_gpu_worker_allocated_bytes{device="cuda:0"} 1.073741824e+09
modelserver_gpu_worker_allocated_bytes{device="cuda:1"} 5
# HELP modelserver_gpu_worker_allocated_peak_bytes The most device memory modelserver's CUDA worker has held at once.
# TYPE modelserver_gpu_worker_allocated_peak_bytes gauge
modelserver_gpu_worker_allocated_peak_bytes{device="cuda:0"} 2.147483648e+09
modelserver_gpu_worker_allocated_peak_bytes{device="cuda:1"} 0
# HELP modelserver_gpu_worker_pinned_host_bytes Page-locked host memory allocated by modelserver's CUDA worker.
# TYPE modelserver_gpu_worker_pinned_host_bytes gauge
modelserver_gpu_worker_pinned_host_bytes{device="cuda:0"} 1.048576e+06
modelserver_gpu_worker_pinned_host_bytes{device="cuda:1"} 0
`
	start := time.Now()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a scrape with a busy GPU took %v", d)
	}
}

func TestCollectorCPUOnly(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(cuda.Accelerator{}))
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("a CPU deployment without accelerator exports %d GPU series, %v; want none", n, err)
	}
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(New(cuda.Accelerator{Type: "A10G", Count: 1}))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP modelserver_gpu_requested GPUs config.yaml's resources.accelerator asks for, by type.
# TYPE modelserver_gpu_requested gauge
modelserver_gpu_requested{accelerator="A10G"} 1
`)); err != nil {
		t.Error(err)
	}
}

func TestCollectorStoppedWorker(t *testing.T) {
	gone := &fakeGPU{dev: cuda.Device{Index: 0, Name: "x", TotalMemory: 7}, err: errors.Join(cuda.ErrStopped)}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(cuda.Accelerator{}, gone))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP modelserver_gpu_memory_query_errors_total Scrapes that could not read a GPU's memory in time (its worker was busy or stopped).
# TYPE modelserver_gpu_memory_query_errors_total counter
modelserver_gpu_memory_query_errors_total{device="cuda:0"} 1
# HELP modelserver_gpu_memory_total_bytes Device memory of the GPU.
# TYPE modelserver_gpu_memory_total_bytes gauge
modelserver_gpu_memory_total_bytes{device="cuda:0"} 7
`), "modelserver_gpu_memory_total_bytes", "modelserver_gpu_memory_query_errors_total", "modelserver_gpu_memory_free_bytes"); err != nil {
		t.Error(err)
	}
}
