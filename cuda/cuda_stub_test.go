//go:build !cuda

package cuda

import (
	"errors"
	"strings"
	"testing"
)

func TestStubReportsErrNoCUDA(t *testing.T) {
	if Built {
		t.Fatal("Built is true in a build without the cuda tag")
	}
	devices, err := Devices()
	if !errors.Is(err, ErrNoCUDA) || devices != nil {
		t.Fatalf("Devices() = %v, %v; want nil, ErrNoCUDA", devices, err)
	}
	if !strings.Contains(err.Error(), "built without CUDA support") || !strings.Contains(err.Error(), "-tags cuda") {
		t.Errorf("Devices() error %q does not say how to get CUDA support", err)
	}
	if inv, err := Probe(); !errors.Is(err, ErrNoCUDA) || len(inv.Devices) != 0 {
		t.Errorf("Probe() = %+v, %v; want no devices, ErrNoCUDA", inv, err)
	}
	if w, err := Open(0); !errors.Is(err, ErrNoCUDA) || w != nil {
		t.Errorf("Open(0) = %v, %v; want nil, ErrNoCUDA", w, err)
	}
	// The device choice of an untagged binary: auto runs on the CPU, an
	// explicit GPU request fails with the stub's reason.
	inv, probeErr := Probe()
	if p, err := Select(Request{}, inv.Devices, probeErr); err != nil || p.Kind != CPU || !strings.Contains(p.Reason, "built without CUDA") {
		t.Errorf("Select(auto) = %+v, %v; want the CPU, with the reason", p, err)
	}
	if _, err := Select(Request{Explicit: true, Kind: GPU, Index: -1}, inv.Devices, probeErr); !errors.Is(err, ErrNoCUDA) {
		t.Errorf("Select(cuda) error = %v, want ErrNoCUDA", err)
	}
}

// TestStubThreadMethods runs every Thread method of the stub on a worker
// with fake hooks: each reports ErrNoCUDA rather than pretending to work.
func TestStubThreadMethods(t *testing.T) {
	w := startFake(t)
	err := w.Do(timeout(t), func(th *Thread) error {
		_, _, e1 := th.MemInfo()
		_, e2 := th.Alloc(1)
		_, e3 := th.AllocHost(1)
		_, e4 := th.NewStream()
		_, e5 := th.NewEvent(true)
		_, e6 := th.LoadModule([]byte("x"))
		_, e7 := th.Elapsed(nil, nil)
		_, e8 := th.Function(nil, "k")
		for i, err := range []error{e1, e2, e3, e4, e5, e6, e7, e8,
			th.Synchronize(), th.Free(nil), th.FreeHost(nil), th.Memset(nil, 0, nil),
			th.CopyHtoD(nil, 0, nil), th.CopyDtoH(nil, nil, 0), th.CopyDtoD(nil, 0, nil, 0, 0),
			th.CopyHtoDAsync(nil, 0, nil, 0, 0, nil), th.CopyDtoHAsync(nil, 0, nil, 0, 0, nil),
			th.CopyDtoDAsync(nil, 0, nil, 0, 0, nil), th.DestroyStream(nil), th.SyncStream(nil),
			th.DestroyEvent(nil), th.Record(nil, nil), th.SyncEvent(nil), th.WaitEvent(nil, nil),
			th.UnloadModule(nil), th.Launch(nil, Dim3{}, Dim3{}, 0, nil)} {
			if !errors.Is(err, ErrNoCUDA) {
				t.Errorf("stub Thread call %d returned %v, want ErrNoCUDA", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.MemoryReport(timeout(t)); !errors.Is(err, ErrNoCUDA) {
		t.Errorf("MemoryReport = %v, want ErrNoCUDA", err)
	}
}
