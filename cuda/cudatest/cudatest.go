// Package cudatest gives tests a CUDA worker or skips them.
//
// Tests that need a GPU call Open; without one (an untagged build, no driver,
// no visible device) they are skipped, unless MODELSERVER_REQUIRE_GPU=1 makes
// that a failure, as scripts/gpu-verify.sh does on a GPU machine.
package cudatest

import (
	"errors"
	"os"
	"testing"

	"github.com/modelserver/modelserver/cuda"
)

// Required reports whether MODELSERVER_REQUIRE_GPU=1 is set.
func Required() bool { return os.Getenv("MODELSERVER_REQUIRE_GPU") == "1" }

// Skip skips t (or fails it, when a GPU is required) because of err, which
// wraps cuda.ErrNoCUDA; any other err fails t.
func Skip(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, cuda.ErrNoCUDA) || Required() {
		t.Fatal(err)
	}
	t.Skipf("CUDA not available: %v", err)
}

// Inventory probes the devices, skipping t when there are none.
func Inventory(t testing.TB) cuda.Inventory {
	t.Helper()
	inv, err := cuda.Probe()
	if err != nil {
		Skip(t, err)
	}
	return inv
}

// Open starts a worker for device index, stopped when t ends, skipping t
// when CUDA is unavailable or the host has no such device.
func Open(t testing.TB, index int, opts ...cuda.Option) *cuda.Worker {
	t.Helper()
	w, err := cuda.Open(index, opts...)
	if errors.Is(err, cuda.ErrNoSuchDevice) {
		t.Skip(err) // a test for a second GPU on a one-GPU host
	}
	if err != nil {
		Skip(t, err)
	}
	t.Cleanup(func() {
		if err := w.Stop(); err != nil {
			t.Errorf("stopping the cuda:%d worker: %v", index, err)
		}
	})
	return w
}
