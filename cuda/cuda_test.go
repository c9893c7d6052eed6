package cuda

import (
	"errors"
	"fmt"
	"testing"
)

func TestFormatVersion(t *testing.T) {
	for v, want := range map[int]string{12080: "12.8", 11080: "11.8", 13000: "13.0", 12020: "12.2", 0: "none", -1: "none"} {
		if got := FormatVersion(v); got != want {
			t.Errorf("FormatVersion(%d) = %q, want %q", v, got, want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 85520809984: "79.6 GiB", 1 << 40: "1.0 TiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseDriverRelease(t *testing.T) {
	tests := map[string]string{
		"NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.124.06  Wed Mar  5 21:42:02 UTC 2025\nGCC version:  gcc version 12.2.0\n": "570.124.06",
		"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  575.57.08  Release Build  (dvs-builder@U16-I3-B03-4-3)\n":            "575.57.08",
		"GCC version: gcc\n": "",
		"":                   "",
	}
	for text, want := range tests {
		if got := parseDriverRelease(text); got != want {
			t.Errorf("parseDriverRelease(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	oom := &Error{Op: "cuMemAlloc", Code: 2, Name: "CUDA_ERROR_OUT_OF_MEMORY", Message: "out of memory"}
	if !errors.Is(fmt.Errorf("loading: %w", oom), ErrOutOfMemory) {
		t.Error("the driver's out-of-memory error is not ErrOutOfMemory")
	}
	if got := oom.Error(); got != "cuda: cuMemAlloc: out of memory (CUDA_ERROR_OUT_OF_MEMORY)" {
		t.Errorf("Error() = %q", got)
	}
	inval := &Error{Op: "cuLaunchKernel", Code: 1, Name: "CUDA_ERROR_INVALID_VALUE", Message: "invalid argument"}
	if errors.Is(inval, ErrOutOfMemory) {
		t.Error("CUDA_ERROR_INVALID_VALUE is ErrOutOfMemory")
	}
	le := &LaunchError{Kernel: "saxpy", Grid: Dim3{X: 4}, Block: Dim3{X: 4096}, Err: inval}
	var ce *Error
	if !errors.As(le, &ce) || ce != inval {
		t.Error("LaunchError does not unwrap to the driver error")
	}
	if got := le.Error(); got != "cuda: launching saxpy grid (4,1,1) block (4096,1,1): cuda: cuLaunchKernel: invalid argument (CUDA_ERROR_INVALID_VALUE)" {
		t.Errorf("LaunchError = %q", got)
	}
	d := Device{Index: 1, Name: "NVIDIA H100 80GB HBM3", TotalMemory: 85520809984, FreeMemory: 84987543552, ComputeCapability: 90}
	if got := d.String(); got != "cuda:1 NVIDIA H100 80GB HBM3 (sm_90, 79.6 GiB total, 79.2 GiB free)" {
		t.Errorf("Device.String() = %q", got)
	}
}
