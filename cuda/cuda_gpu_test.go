//go:build cuda

package cuda_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/modelserver/modelserver/cuda"
	"github.com/modelserver/modelserver/cuda/cudatest"
	"github.com/modelserver/modelserver/cuda/kernels"
)

const mib = 1 << 20

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestNoDevice runs where the tagged binary started without a usable GPU
// (the driver library present, no device): everything reports ErrNoCUDA
// instead of the process exiting in gorgonia.org/cu's init.
func TestNoDevice(t *testing.T) {
	inv, err := cuda.Probe()
	if err == nil {
		t.Skipf("a GPU is present (%d device(s))", len(inv.Devices))
	}
	if cudatest.Required() {
		t.Fatalf("MODELSERVER_REQUIRE_GPU=1 but Probe failed: %v", err)
	}
	if !errors.Is(err, cuda.ErrNoCUDA) || !strings.Contains(err.Error(), "cuInit") {
		t.Fatalf("Probe() error = %v; want ErrNoCUDA naming cuInit", err)
	}
	if inv.HeaderVersion < 11000 {
		t.Errorf("HeaderVersion = %d, want the cuda.h version (11080 for Debian's 11.8)", inv.HeaderVersion)
	}
	if _, err := cuda.Open(0); !errors.Is(err, cuda.ErrNoCUDA) {
		t.Errorf("Open(0) error = %v, want ErrNoCUDA", err)
	}
	t.Logf("no GPU: %v; inventory %+v", err, inv)
	p, selErr := cuda.Select(cuda.Request{}, inv.Devices, err)
	if selErr != nil || p.Kind != cuda.CPU {
		t.Errorf("Select(auto) = %v, %v; want the CPU", p, selErr)
	}
}

func TestProbe(t *testing.T) {
	inv := cudatest.Inventory(t)
	t.Logf("driver %s (release %q), runtime %s (%s), built against %s",
		cuda.FormatVersion(inv.DriverVersion), inv.DriverRelease, cuda.FormatVersion(inv.RuntimeVersion),
		inv.RuntimeLibrary, cuda.FormatVersion(inv.HeaderVersion))
	if len(inv.Devices) == 0 {
		t.Fatal("Probe found no devices but no error")
	}
	if inv.DriverVersion < 11000 || inv.HeaderVersion < 11000 {
		t.Errorf("DriverVersion %d, HeaderVersion %d; want CUDA 11 or newer", inv.DriverVersion, inv.HeaderVersion)
	}
	for i, d := range inv.Devices {
		t.Logf("%v: uuid %s, pci %s, %d SMs, peak %.0f GB/s", d, d.UUID, d.PCIBusID, d.Multiprocessors, d.PeakMemoryBandwidth()/1e9)
		switch {
		case d.Index != i:
			t.Errorf("device %d has Index %d", i, d.Index)
		case d.Name == "" || !strings.HasPrefix(d.UUID, "GPU-") || d.PCIBusID == "":
			t.Errorf("device %d: name %q, uuid %q, bus %q; want all set", i, d.Name, d.UUID, d.PCIBusID)
		case d.TotalMemory < 1<<30 || d.FreeMemory == 0 || d.FreeMemory > d.TotalMemory:
			t.Errorf("device %d: total %d, free %d", i, d.TotalMemory, d.FreeMemory)
		case d.ComputeCapability < 50 || d.Multiprocessors <= 0 || d.PeakMemoryBandwidth() <= 0:
			t.Errorf("device %d: sm_%d, %d SMs, peak bandwidth %g", i, d.ComputeCapability, d.Multiprocessors, d.PeakMemoryBandwidth())
		}
	}
	// nvidia-smi sees every GPU of the host; the driver only those in
	// CUDA_VISIBLE_DEVICES.
	if _, set := os.LookupEnv("CUDA_VISIBLE_DEVICES"); !set {
		if out, err := exec.Command("nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader").Output(); err == nil {
			uuids := strings.Fields(string(out))
			if len(uuids) != len(inv.Devices) {
				t.Errorf("nvidia-smi lists %d GPUs, Probe %d", len(uuids), len(inv.Devices))
			}
			for i, u := range uuids {
				if i < len(inv.Devices) && !strings.EqualFold(u, inv.Devices[i].UUID) {
					t.Logf("nvidia-smi order differs from CUDA's (CUDA_DEVICE_ORDER): %s vs %s", u, inv.Devices[i].UUID)
				}
			}
		}
	}
}

func TestWorkerThreadAndPrimaryContext(t *testing.T) {
	w := cudatest.Open(t, 0)
	ctx := testCtx(t)
	var tids []int
	for range 5 {
		err := w.Do(ctx, func(th *cuda.Thread) error {
			tids = append(tids, syscall.Gettid())
			cur, err := cu.CurrentContext()
			if err != nil {
				return err
			}
			d := cu.Device(w.Device().Index)
			prim, err := d.RetainPrimaryCtx()
			if err != nil {
				return err
			}
			defer d.ReleasePrimaryCtx()
			if cur != prim {
				t.Errorf("current context %v is not the device's primary context %v", cur, prim)
			}
			_, active, err := d.PrimaryCtxState()
			if err != nil || active != 1 {
				t.Errorf("primary context state: active %d, %v; want active", active, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tid := range tids[1:] {
		if tid != tids[0] {
			t.Fatalf("jobs ran on threads %v; want one locked thread", tids)
		}
	}
}

func TestMemoryAccounting(t *testing.T) {
	w := cudatest.Open(t, 0)
	ctx := testCtx(t)
	err := w.Do(ctx, func(th *cuda.Thread) error {
		free0, total, err := th.MemInfo()
		if err != nil {
			return err
		}
		a, err := th.Alloc(64 * mib)
		if err != nil {
			return err
		}
		b, err := th.Alloc(64 * mib)
		if err != nil {
			return err
		}
		free1, _, err := th.MemInfo()
		if err != nil {
			return err
		}
		if drop := int64(free0) - int64(free1); drop < 128*mib || drop > 128*mib+64*mib {
			t.Errorf("driver free memory fell by %d bytes for 128 MiB allocated (total %d)", drop, total)
		}
		s := w.MemStats()
		if s.DeviceBytes != 128*mib || s.DeviceBuffers != 2 || s.Allocs != 2 || s.PeakDeviceBytes != 128*mib {
			t.Errorf("after two 64 MiB allocations MemStats = %+v", s)
		}
		if err := th.Free(a); err != nil {
			return err
		}
		if err := th.Free(a); err == nil {
			t.Error("freeing a buffer twice succeeded")
		}
		s = w.MemStats()
		if s.DeviceBytes != 64*mib || s.DeviceBuffers != 1 || s.Frees != 1 || s.PeakDeviceBytes != 128*mib {
			t.Errorf("after one free MemStats = %+v", s)
		}
		if _, err := th.Alloc(int64(total) + 1<<30); !errors.Is(err, cuda.ErrOutOfMemory) {
			t.Errorf("allocating more than the device holds: %v, want ErrOutOfMemory", err)
		}
		if w.MemStats().DeviceBuffers != 1 {
			t.Error("a failed allocation was counted")
		}
		_ = b // left for Stop to free
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	limited := cudatest.Open(t, 0, cuda.WithMemoryLimit(96*mib))
	err = limited.Do(ctx, func(th *cuda.Thread) error {
		if _, err := th.Alloc(64 * mib); err != nil {
			return err
		}
		if _, err := th.Alloc(64 * mib); !errors.Is(err, cuda.ErrOutOfMemory) {
			t.Errorf("allocating past WithMemoryLimit: %v, want ErrOutOfMemory", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Stop frees what a worker's functions left behind.
	leaky, err := cuda.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	var before uint64
	if err := w.Do(ctx, func(th *cuda.Thread) (err error) { before, _, err = th.MemInfo(); return err }); err != nil {
		t.Fatal(err)
	}
	if err := leaky.Do(ctx, func(th *cuda.Thread) error {
		_, err := th.Alloc(256 * mib)
		if err == nil {
			_, err = th.AllocHost(mib)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := leaky.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := leaky.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if s := leaky.MemStats(); s.DeviceBytes != 0 || s.PinnedBytes != 0 {
		t.Errorf("after Stop MemStats = %+v, want nothing live", s)
	}
	var after uint64
	if err := w.Do(ctx, func(th *cuda.Thread) (err error) { after, _, err = th.MemInfo(); return err }); err != nil {
		t.Fatal(err)
	}
	if int64(before)-int64(after) > 32*mib {
		t.Errorf("free memory %d before a leaky worker, %d after its Stop", before, after)
	}
}

func TestCopies(t *testing.T) {
	w := cudatest.Open(t, 0)
	const n = 8*mib + 3
	src := make([]byte, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	err := w.Do(testCtx(t), func(th *cuda.Thread) error {
		a, err := th.Alloc(n)
		if err != nil {
			return err
		}
		b, err := th.Alloc(n + 16)
		if err != nil {
			return err
		}
		if err := th.CopyHtoD(a, 0, src); err != nil {
			return err
		}
		if err := th.CopyDtoD(b, 16, a, 0, n); err != nil {
			return err
		}
		got := make([]byte, n)
		if err := th.CopyDtoH(got, b, 16); err != nil {
			return err
		}
		if !bytes.Equal(got, src) {
			t.Error("synchronous H→D→D→H round trip changed the data")
		}
		if err := th.CopyHtoD(a, 1, src); err == nil {
			t.Error("a copy past the end of the buffer succeeded")
		}

		// Asynchronous: pinned buffers, two streams ordered by an event.
		hin, err := th.AllocHost(n)
		if err != nil {
			return err
		}
		hout, err := th.AllocHost(n)
		if err != nil {
			return err
		}
		if w.MemStats().PinnedBytes != 2*n || w.MemStats().PinnedBuffers != 2 {
			t.Errorf("pinned accounting %+v", w.MemStats())
		}
		copy(hin.Bytes(), src)
		s1, err := th.NewStream()
		if err != nil {
			return err
		}
		s2, err := th.NewStream()
		if err != nil {
			return err
		}
		uploaded, err := th.NewEvent(false)
		if err != nil {
			return err
		}
		if err := th.Memset(b, 0, s1); err != nil {
			return err
		}
		if err := th.CopyHtoDAsync(b, 0, hin, 0, n, s1); err != nil {
			return err
		}
		if err := th.Record(uploaded, s1); err != nil {
			return err
		}
		if err := th.WaitEvent(s2, uploaded); err != nil {
			return err
		}
		if err := th.CopyDtoDAsync(a, 0, b, 0, n, s2); err != nil {
			return err
		}
		if err := th.CopyDtoHAsync(hout, 0, a, 0, n, s2); err != nil {
			return err
		}
		if err := th.SyncStream(s2); err != nil {
			return err
		}
		if !bytes.Equal(hout.Bytes(), src) {
			t.Error("asynchronous round trip over two streams changed the data")
		}
		if err := th.CopyHtoDAsync(b, 0, hin, 1, n, s1); err == nil {
			t.Error("an async copy past the end of the host buffer succeeded")
		}
		if err := errors.Join(th.DestroyEvent(uploaded), th.DestroyStream(s1), th.DestroyStream(s2), th.FreeHost(hin), th.FreeHost(hout)); err != nil {
			return err
		}
		if th.SyncStream(s1) == nil || th.SyncEvent(uploaded) == nil || th.DestroyStream(s2) == nil || th.FreeHost(hin) == nil {
			t.Error("a destroyed stream, event or host buffer was accepted")
		}
		if s := w.MemStats(); s.PinnedBytes != 0 || s.PinnedBuffers != 0 {
			t.Errorf("pinned accounting after FreeHost: %+v", s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func f32bytes(s []float32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), 4*len(s))
}

func TestKernels(t *testing.T) {
	w := cudatest.Open(t, 0)
	const n = 1<<20 + 3 // not a multiple of the block size
	x, y := make([]float32, n), make([]float32, n)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range x {
		x[i], y[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	const a = float32(1.7)
	want := make([]float32, n)
	for i := range want {
		p := a * x[i] // rounded to float32: the explicit conversion rules out fusion
		want[i] = float32(p) + y[i]
	}
	err := w.Do(testCtx(t), func(th *cuda.Thread) error {
		m, err := th.LoadModule(kernels.PTX)
		if err != nil {
			return err
		}
		saxpy, err := th.Function(m, kernels.Saxpy)
		if err != nil {
			return err
		}
		dx, err := th.Alloc(4 * n)
		if err != nil {
			return err
		}
		dy, err := th.Alloc(4 * n)
		if err != nil {
			return err
		}
		if err := errors.Join(th.CopyHtoD(dx, 0, f32bytes(x)), th.CopyHtoD(dy, 0, f32bytes(y))); err != nil {
			return err
		}
		if err := th.Launch(saxpy, cuda.Dim3{X: (n + 255) / 256}, cuda.Dim3{X: 256}, 0, nil, uint64(n), a, dx, dy); err != nil {
			return err
		}
		got := make([]float32, n)
		if err := th.CopyDtoH(f32bytes(got), dy, 0); err != nil {
			return err
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Errorf("saxpy[%d] = %g, CPU reference %g (x %g, y %g)", i, got[i], want[i], x[i], y[i])
				break
			}
		}

		// A grid far smaller than n: the grid-stride loop covers the rest.
		iota, err := th.Function(m, kernels.IotaU32)
		if err != nil {
			return err
		}
		if err := th.Launch(iota, cuda.Dim3{X: 7}, cuda.Dim3{X: 96}, 0, nil, uint64(n), uint32(5), uint32(3), dx); err != nil {
			return err
		}
		raw := make([]byte, 4*n)
		if err := th.CopyDtoH(raw, dx, 0); err != nil {
			return err
		}
		for i := range n {
			if v := binary.LittleEndian.Uint32(raw[4*i:]); v != uint32(5+3*i) {
				t.Errorf("iota_u32[%d] = %d, want %d", i, v, 5+3*i)
				break
			}
		}

		// Every launch is checked: a block larger than any GPU allows is
		// refused by the driver and reported with the kernel's name.
		err = th.Launch(saxpy, cuda.Dim3{X: 1}, cuda.Dim3{X: 4096}, 0, nil, uint64(n), a, dx, dy)
		var le *cuda.LaunchError
		var ce *cuda.Error
		if !errors.As(err, &le) || le.Kernel != kernels.Saxpy || !errors.As(err, &ce) || ce.Name != "CUDA_ERROR_INVALID_VALUE" {
			t.Errorf("launch with block 4096 = %v; want a LaunchError with CUDA_ERROR_INVALID_VALUE", err)
		}
		if err := th.Launch(saxpy, cuda.Dim3{X: 1}, cuda.Dim3{X: 32}, 0, nil, n, a, dx, dy); err == nil {
			t.Error("launch with a Go int argument succeeded")
		}
		if _, err := th.Function(m, "no_such_kernel"); err == nil {
			t.Error("looking up a missing kernel succeeded")
		}
		if _, err := th.LoadModule([]byte("not ptx")); err == nil {
			t.Error("loading garbage as a module succeeded")
		}
		return th.Synchronize()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFatbin loads a fatbin (cubins for real architectures plus PTX) that
// scripts/gpu-verify.sh compiles with nvcc, when it names one.
func TestFatbin(t *testing.T) {
	path := os.Getenv("MODELSERVER_TEST_FATBIN")
	if path == "" {
		t.Skip("MODELSERVER_TEST_FATBIN not set")
	}
	image, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := cudatest.Open(t, 0, cuda.WithSyncAfterLaunch(true))
	err = w.Do(testCtx(t), func(th *cuda.Thread) error {
		m, err := th.LoadModule(image)
		if err != nil {
			return err
		}
		iota, err := th.Function(m, kernels.IotaU32)
		if err != nil {
			return err
		}
		out, err := th.Alloc(4 * 1000)
		if err != nil {
			return err
		}
		if err := th.Launch(iota, cuda.Dim3{X: 4}, cuda.Dim3{X: 128}, 0, nil, uint64(1000), uint32(0), uint32(1), out); err != nil {
			return err
		}
		raw := make([]byte, 4000)
		if err := th.CopyDtoH(raw, out, 0); err != nil {
			return err
		}
		if v := binary.LittleEndian.Uint32(raw[4*999:]); v != 999 {
			t.Errorf("fatbin iota_u32[999] = %d", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPanicAndStop(t *testing.T) {
	w, err := cuda.Open(0)
	if err != nil {
		cudatest.Skip(t, err)
	}
	ctx := testCtx(t)
	var pe *cuda.PanicError
	if err := w.Do(ctx, func(*cuda.Thread) error { panic("boom") }); !errors.As(err, &pe) || pe.Value != "boom" {
		t.Fatalf("Do(panic) = %v, want a PanicError", err)
	}
	if err := w.Do(ctx, func(th *cuda.Thread) error { _, _, err := th.MemInfo(); return err }); err != nil {
		t.Fatalf("worker after a panic: %v", err)
	}
	var escaped *cuda.Thread
	w.Do(ctx, func(th *cuda.Thread) error { escaped = th; return nil })
	if _, err := escaped.Alloc(mib); !errors.Is(err, cuda.ErrThreadEscaped) {
		t.Errorf("Alloc on an escaped Thread = %v, want ErrThreadEscaped", err)
	}
	if err := errors.Join(w.Stop(), w.Stop()); err != nil {
		t.Fatal(err)
	}
	if err := w.Do(ctx, func(*cuda.Thread) error { return nil }); !errors.Is(err, cuda.ErrStopped) {
		t.Errorf("Do after Stop = %v, want ErrStopped", err)
	}
}

// TestBandwidth measures copy bandwidth and compares it with the device's
// data sheet (device memory) and its PCIe link (host transfers). The
// thresholds are loose, to catch a misconfigured machine or a broken copy
// path rather than to benchmark: device-to-device at least 50% of the data
// sheet, pinned host transfers at least 40% of the link.
func TestBandwidth(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	w := cudatest.Open(t, 0)
	dev := w.Device()
	sheet, known := cuda.DatasheetBandwidth(dev.Name)
	if !known {
		sheet = dev.PeakMemoryBandwidth()
		t.Logf("%s is not in the data sheet table; using the driver's peak %.0f GB/s", dev.Name, sheet/1e9)
	}
	const size = 512 * mib
	const reps = 20
	err := w.Do(testCtx(t), func(th *cuda.Thread) error {
		a, err := th.Alloc(size)
		if err != nil {
			return err
		}
		b, err := th.Alloc(size)
		if err != nil {
			return err
		}
		h, err := th.AllocHost(size)
		if err != nil {
			return err
		}
		s, err := th.NewStream()
		if err != nil {
			return err
		}
		start, err := th.NewEvent(true)
		if err != nil {
			return err
		}
		end, err := th.NewEvent(true)
		if err != nil {
			return err
		}
		timeIt := func(copy func() error) (time.Duration, error) {
			if err := copy(); err != nil { // warm-up
				return 0, err
			}
			if err := th.Record(start, s); err != nil {
				return 0, err
			}
			for range reps {
				if err := copy(); err != nil {
					return 0, err
				}
			}
			if err := errors.Join(th.Record(end, s), th.SyncEvent(end)); err != nil {
				return 0, err
			}
			d, err := th.Elapsed(start, end)
			return d / reps, err
		}
		dtod, err := timeIt(func() error { return th.CopyDtoDAsync(b, 0, a, 0, size, s) })
		if err != nil {
			return err
		}
		// A device copy reads and writes every byte.
		dtodBW := 2 * size / dtod.Seconds()
		t.Logf("device→device: %.0f GB/s moved (read+write), %.0f%% of the data sheet's %.0f GB/s for %s",
			dtodBW/1e9, 100*dtodBW/sheet, sheet/1e9, dev.Name)
		if dtodBW < 0.5*sheet {
			t.Errorf("device→device bandwidth %.0f GB/s is under half the data sheet's %.0f GB/s", dtodBW/1e9, sheet/1e9)
		}
		htod, err := timeIt(func() error { return th.CopyHtoDAsync(a, 0, h, 0, size, s) })
		if err != nil {
			return err
		}
		dtoh, err := timeIt(func() error { return th.CopyDtoHAsync(h, 0, a, 0, size, s) })
		if err != nil {
			return err
		}
		htodBW, dtohBW := size/htod.Seconds(), size/dtoh.Seconds()
		link, err := cuda.MaxPCIeLink(dev.PCIBusID)
		if err != nil {
			t.Logf("host→device %.1f GB/s, device→host %.1f GB/s (pinned); PCIe link unknown: %v", htodBW/1e9, dtohBW/1e9, err)
			return nil
		}
		t.Logf("host→device %.1f GB/s, device→host %.1f GB/s (pinned): %.0f%% and %.0f%% of PCIe %v's %.1f GB/s",
			htodBW/1e9, dtohBW/1e9, 100*htodBW/link.Bandwidth(), 100*dtohBW/link.Bandwidth(), link, link.Bandwidth()/1e9)
		if min(htodBW, dtohBW) < 0.4*link.Bandwidth() {
			t.Errorf("pinned host transfers (%.1f, %.1f GB/s) are under 40%% of the PCIe link's %.1f GB/s",
				htodBW/1e9, dtohBW/1e9, link.Bandwidth()/1e9)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
