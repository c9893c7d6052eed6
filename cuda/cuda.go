// Package cuda is the NVIDIA GPU device layer.
//
// The real implementation, on gorgonia.org/cu, is built only with the cuda
// build tag, because that package calls cuInit in its init and exits the
// process on a machine without a driver. Without the tag every function
// returns ErrNoCUDA, so the rest of the server builds and runs on CPU-only
// machines and decides its device before any CUDA code could load.
package cuda

import "errors"

// ErrNoCUDA is returned by every function of a build without CUDA support.
var ErrNoCUDA = errors.New("cuda: this modelserver was built without CUDA support (rebuild with -tags cuda on a machine with the CUDA toolkit)")

// Device describes one GPU.
type Device struct {
	Index int
	Name  string
	// TotalMemory and FreeMemory are in bytes.
	TotalMemory, FreeMemory uint64
	// ComputeCapability is major*10+minor, e.g. 90 for Hopper.
	ComputeCapability int
}
