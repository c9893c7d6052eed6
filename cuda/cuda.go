// Package cuda is the NVIDIA GPU device layer: device inventory, one
// OS-thread-locked worker per device, device memory with accounting, pinned
// host buffers, streams and events, asynchronous copies, and kernels loaded
// from PTX or cubin images.
//
// # Builds
//
// The implementation, on gorgonia.org/cu (the CUDA driver API), is compiled
// only with the cuda build tag. Without the tag every entry point returns an
// error wrapping ErrNoCUDA, the package needs no CUDA headers or libraries, and
// the rest of the server builds and runs on CPU-only machines.
//
// A cuda-tagged binary links libcuda.so.1, so it starts only where the NVIDIA
// driver's user-space library is installed (a GPU host, or a container started
// with --gpus). gorgonia.org/cu calls cuInit in its package init and exits the
// process when that fails; this package interposes cuInit (cuinit.c) so that a
// tagged binary on a host with the driver library but no usable GPU keeps
// running and reports ErrNoCUDA instead. Device choice (--device auto) is made
// with Probe before anything touches a GPU; see Select for the rules.
//
// # Threads and contexts
//
// All CUDA calls go through a Worker: a goroutine locked to one OS thread on
// which the device's primary context is current. The primary context is the
// one the CUDA runtime, and so ONNX Runtime's CUDA execution provider, uses on
// that device, so device pointers are valid in both. Worker.Do runs a function
// on that thread with a *Thread handle, which is valid only during the call.
// Context cancellation applies only while a call waits for the worker; once
// the worker has accepted it, the function runs to completion.
//
// Functions that need no device (Select, ParseDevice, ParseAccelerator, the
// version and bandwidth helpers) are the same in both builds and are safe for
// concurrent use. A Worker is safe for concurrent use; a Thread is not, and
// must not be used outside the function it was passed to.
package cuda

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
)

// ErrNoCUDA is wrapped by every error that means no CUDA device can be used
// by this process: a build without the cuda tag, no driver, or no visible GPU.
// The wrapping error says which.
var ErrNoCUDA = errors.New("cuda: no CUDA device available")

// ErrStopped is returned by Worker.Do after Worker.Stop.
var ErrStopped = errors.New("cuda: worker stopped")

// ErrOutOfMemory is wrapped by allocation failures: the device has no room,
// or the allocation would pass the worker's memory limit (WithMemoryLimit).
var ErrOutOfMemory = errors.New("cuda: out of memory")

// ErrThreadEscaped is returned by Thread methods called after the function
// the Thread was handed to has returned.
var ErrThreadEscaped = errors.New("cuda: Thread used outside its Worker.Do call")

// Device describes one GPU.
type Device struct {
	// Index is the CUDA device ordinal (after CUDA_VISIBLE_DEVICES).
	Index int
	Name  string
	// UUID is the device UUID in nvidia-smi's form ("GPU-…"); empty if unknown.
	UUID string
	// PCIBusID is the device's PCI address ("0000:3b:00.0"); empty if unknown.
	PCIBusID string
	// TotalMemory and FreeMemory are in bytes. FreeMemory is a snapshot taken
	// by Probe and counts every process's allocations.
	TotalMemory, FreeMemory uint64
	// ComputeCapability is major*10+minor, e.g. 90 for Hopper.
	ComputeCapability int
	// Multiprocessors is the number of streaming multiprocessors.
	Multiprocessors int
	// MemoryClockKHz and MemoryBusWidth (bits) give the theoretical memory
	// bandwidth; see PeakMemoryBandwidth.
	MemoryClockKHz int
	MemoryBusWidth int
}

// PeakMemoryBandwidth is the theoretical device memory bandwidth in bytes per
// second that the driver's attributes imply (double data rate × bus width),
// 0 if they are unknown. For an H100 SXM5 it is 3.35e12.
func (d Device) PeakMemoryBandwidth() float64 {
	return 2 * float64(d.MemoryClockKHz) * 1000 * float64(d.MemoryBusWidth) / 8
}

// String describes the device in one line for logs.
func (d Device) String() string {
	return fmt.Sprintf("cuda:%d %s (sm_%d, %s total, %s free)", d.Index, d.Name, d.ComputeCapability,
		FormatBytes(d.TotalMemory), FormatBytes(d.FreeMemory))
}

// Inventory is what Probe reports.
type Inventory struct {
	// DriverVersion is the CUDA version the installed driver supports
	// (cuDriverGetVersion: 1000*major + 10*minor, 12080 for 12.8); 0 without
	// a driver.
	DriverVersion int
	// DriverRelease is the kernel module's release ("570.124.06") from
	// /proc/driver/nvidia/version; empty where that file is unreadable.
	DriverRelease string
	// RuntimeVersion is the version of the CUDA runtime library (libcudart)
	// the process uses or can load, which is the one ONNX Runtime's CUDA
	// provider uses; 0 when none is installed or it cannot tell (CUDA 11's
	// runtime cannot without a GPU). RuntimeLibrary names the file.
	RuntimeVersion int
	RuntimeLibrary string
	// HeaderVersion is the CUDA version of the cuda.h the binary was built
	// against (11080 for the Debian 11.8 headers).
	HeaderVersion int
	Devices       []Device
}

// FormatVersion renders a CUDA version number (12080) as "12.8".
func FormatVersion(v int) string {
	if v <= 0 {
		return "none"
	}
	return strconv.Itoa(v/1000) + "." + strconv.Itoa(v%1000/10)
}

// FormatBytes renders n bytes in binary units with one decimal ("79.6 GiB").
func FormatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// parseDriverRelease extracts the release from the text of
// /proc/driver/nvidia/version ("NVRM version: NVIDIA UNIX x86_64 Kernel
// Module  570.124.06  Thu Mar ...").
func parseDriverRelease(text string) string {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "NVRM version:") {
			continue
		}
		fields := strings.Fields(line)
		for i, f := range fields {
			if f == "Module" && i+1 < len(fields) {
				// Open kernel modules say "Open Kernel Module for x86_64  570.…".
				for _, g := range fields[i+1:] {
					if g != "" && g[0] >= '0' && g[0] <= '9' && strings.Contains(g, ".") {
						return g
					}
				}
			}
		}
	}
	return ""
}

// DevicePtr is a device address in the worker's context.
type DevicePtr uintptr

// Dim3 is a grid or block shape for a kernel launch. Zero components count
// as 1, so Dim3{X: n} is a one-dimensional shape.
type Dim3 struct{ X, Y, Z uint32 }

func (d Dim3) norm() Dim3 {
	if d.X == 0 {
		d.X = 1
	}
	if d.Y == 0 {
		d.Y = 1
	}
	if d.Z == 0 {
		d.Z = 1
	}
	return d
}

func (d Dim3) String() string {
	d = d.norm()
	return fmt.Sprintf("(%d,%d,%d)", d.X, d.Y, d.Z)
}

// PanicError is returned by Worker.Do when the function panicked. The worker
// recovers and keeps serving; the CUDA context may still be usable, unless
// the panic followed a sticky device error.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("cuda: panic in worker function: %v\n%s", e.Value, e.Stack)
}

func newPanicError(v any) *PanicError { return &PanicError{Value: v, Stack: debug.Stack()} }

// LaunchError reports a kernel launch that the driver refused (bad grid or
// block shape, too much shared memory, a missing module) or, with
// WithSyncAfterLaunch, that faulted while running.
type LaunchError struct {
	Kernel      string
	Grid, Block Dim3
	Err         error
}

func (e *LaunchError) Error() string {
	return fmt.Sprintf("cuda: launching %s grid %v block %v: %v", e.Kernel, e.Grid, e.Block, e.Err)
}

func (e *LaunchError) Unwrap() error { return e.Err }

// MemoryReport is a device's memory as its worker sees it.
type MemoryReport struct {
	// Free and Total come from the driver (cuMemGetInfo) and count every
	// allocation on the device, ONNX Runtime's arena and other processes
	// included.
	Free, Total uint64
	// Stats is this worker's own accounting.
	Stats MemStats
}

// Error is a CUDA driver error.
type Error struct {
	// Op is the driver call or operation that failed.
	Op string
	// Code is the CUresult; Name and Message are the driver's words for it
	// ("CUDA_ERROR_OUT_OF_MEMORY", "out of memory").
	Code    int
	Name    string
	Message string
}

// cudaErrorOutOfMemory is CUDA_ERROR_OUT_OF_MEMORY, stable across versions.
const cudaErrorOutOfMemory = 2

func (e *Error) Error() string {
	return fmt.Sprintf("cuda: %s: %s (%s)", e.Op, e.Message, e.Name)
}

// Is makes errors.Is(err, ErrOutOfMemory) true for the driver's
// out-of-memory error.
func (e *Error) Is(target error) bool {
	return target == ErrOutOfMemory && e.Code == cudaErrorOutOfMemory
}
