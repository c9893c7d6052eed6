//go:build cuda

package cuda

/*
#cgo LDFLAGS: -lcuda -ldl
#cgo linux CFLAGS: -I/usr/local/cuda/include
#cgo linux LDFLAGS: -L/usr/local/cuda/lib64 -L/usr/local/cuda/lib64/stubs
#include <stdlib.h>
#include <cuda.h>

int modelserver_cuinit_result(void);
int modelserver_cudart_version(char *lib, int lib_len);

static const char *modelserver_error_name(CUresult r) {
	const char *s = NULL;
	if (cuGetErrorName(r, &s) != CUDA_SUCCESS || s == NULL) {
		return "CUDA_ERROR_UNKNOWN_CODE";
	}
	return s;
}

static const char *modelserver_error_string(CUresult r) {
	const char *s = NULL;
	if (cuGetErrorString(r, &s) != CUDA_SUCCESS || s == NULL) {
		return "unknown error code";
	}
	return s;
}
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"time"
	"unsafe"

	"gorgonia.org/cu"
)

// Built reports whether this binary was built with the cuda tag.
const Built = true

type (
	deviceState struct {
		dev      cu.Device
		ctx      cu.CUContext
		retained bool
	}
	streamHandle   = cu.Stream
	eventHandle    = cu.Event
	moduleHandle   = cu.Module
	functionHandle = cu.Function
)

// driverError turns a CUresult into an *Error.
func driverError(op string, r C.CUresult) error {
	if r == C.CUDA_SUCCESS {
		return nil
	}
	return &Error{Op: op, Code: int(r), Name: C.GoString(C.modelserver_error_name(r)), Message: C.GoString(C.modelserver_error_string(r))}
}

// cuErr turns an error of gorgonia.org/cu, whose driver errors are an
// integer type, into an *Error.
func cuErr(op string, err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if v := reflect.ValueOf(e); v.Kind() == reflect.Int {
			return driverError(op, C.CUresult(v.Int()))
		}
	}
	if err == nil {
		return nil
	}
	return fmt.Errorf("cuda: %s: %w", op, err)
}

// initError reports whether the driver initialised (see cuinit.c).
func initError() error {
	r := int(C.modelserver_cuinit_result())
	switch r {
	case 0:
		return nil
	case -1:
		return fmt.Errorf("%w: cuInit was never called", ErrNoCUDA)
	}
	e := driverError("cuInit", C.CUresult(r)).(*Error)
	return fmt.Errorf("%w: cuInit failed with %s (%s); no usable NVIDIA GPU is visible to this process (check nvidia-smi, CUDA_VISIBLE_DEVICES, or docker run --gpus)",
		ErrNoCUDA, e.Name, e.Message)
}

// Probe reports the driver, the CUDA runtime library and every visible GPU.
// It creates each device's primary context for a moment to read its free
// memory. On a host without a usable GPU it returns an error wrapping
// ErrNoCUDA, with the versions it could read.
func Probe() (Inventory, error) {
	inv := Inventory{HeaderVersion: int(C.CUDA_VERSION)}
	if text, err := os.ReadFile("/proc/driver/nvidia/version"); err == nil {
		inv.DriverRelease = parseDriverRelease(string(text))
	}
	var lib [64]C.char
	inv.RuntimeVersion = int(C.modelserver_cudart_version(&lib[0], C.int(len(lib))))
	inv.RuntimeLibrary = C.GoString(&lib[0])
	inv.DriverVersion = max(cu.Version(), 0) // needs no cuInit
	if err := initError(); err != nil {
		return inv, err
	}
	n, err := cu.NumDevices()
	if err != nil {
		return inv, fmt.Errorf("%w: %w", ErrNoCUDA, cuErr("cuDeviceGetCount", err))
	}
	for i := range n {
		d, err := describe(i)
		if err != nil {
			return inv, err
		}
		if d.FreeMemory, err = freeMemory(i); err != nil {
			return inv, err
		}
		inv.Devices = append(inv.Devices, d)
	}
	return inv, nil
}

// Devices lists the visible GPUs (Probe's Devices).
func Devices() ([]Device, error) {
	inv, err := Probe()
	return inv.Devices, err
}

// describe reads a device's static attributes.
func describe(index int) (Device, error) {
	n, err := cu.NumDevices()
	if err != nil {
		return Device{}, cuErr("cuDeviceGetCount", err)
	}
	if index < 0 || index >= n {
		return Device{}, fmt.Errorf("%w: cuda:%d (this host has %d GPU(s))", ErrNoSuchDevice, index, n)
	}
	d := cu.Device(index)
	dev := Device{Index: index}
	if dev.Name, err = d.Name(); err != nil {
		return Device{}, cuErr("cuDeviceGetName", err)
	}
	total, err := d.TotalMem()
	if err != nil {
		return Device{}, cuErr("cuDeviceTotalMem", err)
	}
	dev.TotalMemory = uint64(total)
	attrs, err := d.Attributes(cu.ComputeCapabilityMajor, cu.ComputeCapabilityMinor, cu.MultiprocessorCount,
		cu.MemoryClockRate, cu.GlobalMemoryBusWidth)
	if err != nil {
		return Device{}, cuErr("cuDeviceGetAttribute", err)
	}
	dev.ComputeCapability = attrs[0]*10 + attrs[1]
	dev.Multiprocessors, dev.MemoryClockKHz, dev.MemoryBusWidth = attrs[2], attrs[3], attrs[4]
	if id, err := d.UUID(); err == nil {
		dev.UUID = "GPU-" + id.String()
	}
	var bus [32]C.char
	if C.cuDeviceGetPCIBusId(&bus[0], C.int(len(bus)), C.CUdevice(index)) == C.CUDA_SUCCESS {
		dev.PCIBusID = C.GoString(&bus[0])
	}
	return dev, nil
}

// freeMemory reads a device's free memory in its primary context, on a
// locked thread, leaving the thread's context stack as it found it.
func freeMemory(index int) (uint64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d := cu.Device(index)
	ctx, err := d.RetainPrimaryCtx()
	if err != nil {
		return 0, cuErr("cuDevicePrimaryCtxRetain", err)
	}
	defer d.ReleasePrimaryCtx()
	if err := cu.PushCurrentCtx(ctx); err != nil {
		return 0, cuErr("cuCtxPushCurrent", err)
	}
	defer cu.PopCurrentCtx()
	free, _, err := cu.MemInfo()
	if err != nil {
		return 0, cuErr("cuMemGetInfo", err)
	}
	return uint64(free), nil
}

// Open starts the worker of GPU index: it retains the device's primary
// context and makes it current on the worker's OS thread.
func Open(index int, opts ...Option) (*Worker, error) {
	if err := initError(); err != nil {
		return nil, err
	}
	dev, err := describe(index)
	if err != nil {
		return nil, err
	}
	return startWorker(dev, hooks{setup: setupDevice, teardown: teardownDevice}, opts)
}

func setupDevice(w *Worker) error {
	d := cu.Device(w.dev.Index)
	ctx, err := d.RetainPrimaryCtx()
	if err != nil {
		return cuErr("cuDevicePrimaryCtxRetain", err)
	}
	w.state = deviceState{dev: d, ctx: ctx, retained: true}
	if err := cu.SetCurrentContext(ctx); err != nil {
		return cuErr("cuCtxSetCurrent", err)
	}
	free, _, err := cu.MemInfo()
	if err != nil {
		return cuErr("cuMemGetInfo", err)
	}
	w.dev.FreeMemory = uint64(free)
	return nil
}

// teardownDevice waits for the device, frees what the worker's functions
// left behind and releases the primary context.
func teardownDevice(w *Worker) error {
	if !w.state.retained {
		return nil
	}
	errs := []error{cuErr("cuCtxSynchronize", cu.Synchronize())}
	for m := range w.modules {
		errs = append(errs, cuErr("cuModuleUnload", m.h.Unload()))
	}
	for e := range w.events {
		errs = append(errs, cuErr("cuEventDestroy", cu.DestroyEvent(&e.h)))
	}
	for s := range w.streams {
		errs = append(errs, cuErr("cuStreamDestroy", s.h.Destroy()))
	}
	for b := range w.buffers {
		errs = append(errs, freeDevice(w, b))
	}
	for b := range w.hostBuffers {
		errs = append(errs, freeHost(w, b))
	}
	clear(w.modules)
	clear(w.events)
	clear(w.streams)
	errs = append(errs, cuErr("cuCtxSetCurrent", cu.SetCurrentContext(cu.CUContext{})))
	errs = append(errs, cuErr("cuDevicePrimaryCtxRelease", w.state.dev.ReleasePrimaryCtx()))
	w.state.retained = false
	return errors.Join(errs...)
}

func freeDevice(w *Worker, b *DeviceBuffer) error {
	if _, err := w.ledger.removeDevice(b.ptr); err != nil {
		return err
	}
	delete(w.buffers, b)
	err := cuErr("cuMemFree", cu.MemFree(cu.DevicePtr(b.ptr)))
	b.ptr = 0
	return err
}

func freeHost(w *Worker, b *HostBuffer) error {
	if err := w.ledger.removePinned(uintptr(b.p)); err != nil {
		return err
	}
	delete(w.hostBuffers, b)
	err := driverError("cuMemFreeHost", C.cuMemFreeHost(b.p))
	b.p = nil
	return err
}

// owns checks that a resource belongs to this thread's worker.
func (t *Thread) owns(what string, w *Worker) error {
	if err := t.check(); err != nil {
		return err
	}
	if w != t.w {
		return fmt.Errorf("cuda: the %s is nil, freed, or belongs to another worker", what)
	}
	return nil
}

func (t *Thread) stream(s *Stream) (cu.Stream, error) {
	if s == nil {
		return cu.Stream{}, t.check()
	}
	if err := t.owns("stream", s.owner()); err != nil {
		return cu.Stream{}, err
	}
	if !t.w.streams[s] {
		return cu.Stream{}, errors.New("cuda: the stream was destroyed")
	}
	return s.h, nil
}

// event checks that e is a live event of this thread's worker.
func (t *Thread) event(e *Event) error {
	if err := t.owns("event", e.owner()); err != nil {
		return err
	}
	if !t.w.events[e] {
		return errors.New("cuda: the event was destroyed")
	}
	return nil
}

// MemInfo returns the device's free and total memory as the driver sees it.
func (t *Thread) MemInfo() (free, total uint64, err error) {
	if err := t.check(); err != nil {
		return 0, 0, err
	}
	f, tot, err := cu.MemInfo()
	return uint64(f), uint64(tot), cuErr("cuMemGetInfo", err)
}

// Synchronize waits for all work queued in the context and returns the
// first asynchronous error (a kernel fault, for example).
func (t *Thread) Synchronize() error {
	if err := t.check(); err != nil {
		return err
	}
	return cuErr("cuCtxSynchronize", cu.Synchronize())
}

// Alloc allocates n bytes of device memory, counted in the worker's
// MemStats. The memory is not initialised.
func (t *Thread) Alloc(n int64) (*DeviceBuffer, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, fmt.Errorf("cuda: allocating %d bytes", n)
	}
	if err := t.w.ledger.admit(uint64(n)); err != nil {
		return nil, err
	}
	p, err := cu.MemAlloc(n)
	if err != nil {
		return nil, fmt.Errorf("allocating %s on cuda:%d: %w", FormatBytes(uint64(n)), t.w.dev.Index, cuErr("cuMemAlloc", err))
	}
	b := &DeviceBuffer{w: t.w, ptr: DevicePtr(p), size: n}
	if err := t.w.ledger.addDevice(b.ptr, uint64(n)); err != nil {
		cu.MemFree(p)
		return nil, err
	}
	t.w.buffers[b] = true
	return b, nil
}

// Free frees a buffer from Alloc.
func (t *Thread) Free(b *DeviceBuffer) error {
	if err := t.owns("buffer", b.owner()); err != nil {
		return err
	}
	return freeDevice(t.w, b)
}

// AllocHost allocates n bytes of page-locked host memory, usable for
// asynchronous copies with any context, counted in MemStats.PinnedBytes.
func (t *Thread) AllocHost(n int64) (*HostBuffer, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, fmt.Errorf("cuda: allocating %d pinned bytes", n)
	}
	var p unsafe.Pointer
	if err := driverError("cuMemHostAlloc", C.cuMemHostAlloc(&p, C.size_t(n), C.CU_MEMHOSTALLOC_PORTABLE)); err != nil {
		return nil, fmt.Errorf("allocating %s of pinned host memory: %w", FormatBytes(uint64(n)), err)
	}
	b := &HostBuffer{w: t.w, p: p, size: n}
	if err := t.w.ledger.addPinned(uintptr(p), uint64(n)); err != nil {
		C.cuMemFreeHost(p)
		return nil, err
	}
	t.w.hostBuffers[b] = true
	return b, nil
}

// FreeHost frees a buffer from AllocHost.
func (t *Thread) FreeHost(b *HostBuffer) error {
	if err := t.owns("host buffer", b.owner()); err != nil {
		return err
	}
	return freeHost(t.w, b)
}

// Memset queues setting every byte of dst to value on stream s.
func (t *Thread) Memset(dst *DeviceBuffer, value byte, s *Stream) error {
	st, err := t.stream(s)
	if err == nil {
		err = t.owns("buffer", dst.owner())
	}
	if err != nil {
		return err
	}
	return cuErr("cuMemsetD8Async", cu.MemsetD8Async(cu.DevicePtr(dst.ptr), value, dst.size, st))
}

// CopyHtoD copies src into dst at dstOff and returns when it is done.
func (t *Thread) CopyHtoD(dst *DeviceBuffer, dstOff int64, src []byte) error {
	if err := t.owns("buffer", dst.owner()); err != nil {
		return err
	}
	n := int64(len(src))
	if err := checkRange("destination", dstOff, n, dst.size); err != nil || n == 0 {
		return err
	}
	return cuErr("cuMemcpyHtoD", cu.MemcpyHtoD(cu.DevicePtr(dst.ptr)+cu.DevicePtr(dstOff), unsafe.Pointer(&src[0]), n))
}

// CopyDtoH fills dst from src at srcOff and returns when it is done.
func (t *Thread) CopyDtoH(dst []byte, src *DeviceBuffer, srcOff int64) error {
	if err := t.owns("buffer", src.owner()); err != nil {
		return err
	}
	n := int64(len(dst))
	if err := checkRange("source", srcOff, n, src.size); err != nil || n == 0 {
		return err
	}
	return cuErr("cuMemcpyDtoH", cu.MemcpyDtoH(unsafe.Pointer(&dst[0]), cu.DevicePtr(src.ptr)+cu.DevicePtr(srcOff), n))
}

// CopyDtoD copies n bytes between device buffers and returns when it is
// done.
func (t *Thread) CopyDtoD(dst *DeviceBuffer, dstOff int64, src *DeviceBuffer, srcOff, n int64) error {
	if err := t.copyCheck(dst, dstOff, src, srcOff, n); err != nil || n == 0 {
		return err
	}
	return cuErr("cuMemcpyDtoD", cu.MemcpyDtoD(cu.DevicePtr(dst.ptr)+cu.DevicePtr(dstOff), cu.DevicePtr(src.ptr)+cu.DevicePtr(srcOff), n))
}

func (t *Thread) copyCheck(dst *DeviceBuffer, dstOff int64, src *DeviceBuffer, srcOff, n int64) error {
	if err := t.owns("destination buffer", dst.owner()); err != nil {
		return err
	}
	if err := t.owns("source buffer", src.owner()); err != nil {
		return err
	}
	if err := checkRange("destination", dstOff, n, dst.size); err != nil {
		return err
	}
	return checkRange("source", srcOff, n, src.size)
}

// CopyHtoDAsync queues a copy of n bytes from pinned src at srcOff to dst at
// dstOff on stream s. Neither buffer may be freed or reused before the copy
// is done (SyncStream, SyncEvent).
func (t *Thread) CopyHtoDAsync(dst *DeviceBuffer, dstOff int64, src *HostBuffer, srcOff, n int64, s *Stream) error {
	st, err := t.stream(s)
	if err == nil {
		err = errors.Join(t.owns("buffer", dst.owner()), t.owns("host buffer", src.owner()))
	}
	if err == nil {
		err = errors.Join(checkRange("destination", dstOff, n, dst.size), checkRange("source", srcOff, n, src.size))
	}
	if err != nil || n == 0 {
		return err
	}
	return cuErr("cuMemcpyHtoDAsync", cu.MemcpyHtoDAsync(cu.DevicePtr(dst.ptr)+cu.DevicePtr(dstOff), unsafe.Add(src.p, srcOff), n, st))
}

// CopyDtoHAsync queues a copy of n bytes from src at srcOff into pinned dst
// at dstOff on stream s.
func (t *Thread) CopyDtoHAsync(dst *HostBuffer, dstOff int64, src *DeviceBuffer, srcOff, n int64, s *Stream) error {
	st, err := t.stream(s)
	if err == nil {
		err = errors.Join(t.owns("host buffer", dst.owner()), t.owns("buffer", src.owner()))
	}
	if err == nil {
		err = errors.Join(checkRange("destination", dstOff, n, dst.size), checkRange("source", srcOff, n, src.size))
	}
	if err != nil || n == 0 {
		return err
	}
	return cuErr("cuMemcpyDtoHAsync", cu.MemcpyDtoHAsync(unsafe.Add(dst.p, dstOff), cu.DevicePtr(src.ptr)+cu.DevicePtr(srcOff), n, st))
}

// CopyDtoDAsync queues a copy of n bytes between device buffers on stream s.
func (t *Thread) CopyDtoDAsync(dst *DeviceBuffer, dstOff int64, src *DeviceBuffer, srcOff, n int64, s *Stream) error {
	st, err := t.stream(s)
	if err == nil {
		err = t.copyCheck(dst, dstOff, src, srcOff, n)
	}
	if err != nil || n == 0 {
		return err
	}
	return cuErr("cuMemcpyDtoDAsync", cu.MemcpyDtoDAsync(cu.DevicePtr(dst.ptr)+cu.DevicePtr(dstOff), cu.DevicePtr(src.ptr)+cu.DevicePtr(srcOff), n, st))
}

// NewStream creates a stream that does not synchronise with the default
// stream.
func (t *Thread) NewStream() (*Stream, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	h, err := cu.MakeStream(cu.NonBlocking)
	if err != nil {
		return nil, cuErr("cuStreamCreate", err)
	}
	s := &Stream{w: t.w, h: h}
	t.w.streams[s] = true
	return s, nil
}

// DestroyStream destroys s once its queued work is done.
func (t *Thread) DestroyStream(s *Stream) error {
	if s == nil || !t.w.streams[s] {
		return errors.Join(t.check(), errors.New("cuda: destroying a stream this worker does not hold"))
	}
	delete(t.w.streams, s)
	return cuErr("cuStreamDestroy", s.h.Destroy())
}

// SyncStream waits for the work queued on s (nil: the default stream).
func (t *Thread) SyncStream(s *Stream) error {
	st, err := t.stream(s)
	if err != nil {
		return err
	}
	return cuErr("cuStreamSynchronize", st.Synchronize())
}

// NewEvent creates an event; timing events can be used with Elapsed.
func (t *Thread) NewEvent(timing bool) (*Event, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	flags := cu.DisableTiming
	if timing {
		flags = cu.DefaultEvent
	}
	h, err := cu.MakeEvent(flags)
	if err != nil {
		return nil, cuErr("cuEventCreate", err)
	}
	e := &Event{w: t.w, h: h, timing: timing}
	t.w.events[e] = true
	return e, nil
}

// DestroyEvent destroys e.
func (t *Thread) DestroyEvent(e *Event) error {
	if e == nil || !t.w.events[e] {
		return errors.Join(t.check(), errors.New("cuda: destroying an event this worker does not hold"))
	}
	delete(t.w.events, e)
	return cuErr("cuEventDestroy", cu.DestroyEvent(&e.h))
}

// Record queues e on stream s.
func (t *Thread) Record(e *Event, s *Stream) error {
	st, err := t.stream(s)
	if err == nil {
		err = t.event(e)
	}
	if err != nil {
		return err
	}
	return cuErr("cuEventRecord", e.h.Record(st))
}

// SyncEvent waits until the work before e's last Record is done.
func (t *Thread) SyncEvent(e *Event) error {
	if err := t.event(e); err != nil {
		return err
	}
	return cuErr("cuEventSynchronize", e.h.Synchronize())
}

// WaitEvent makes future work on s wait for e, without blocking the host.
func (t *Thread) WaitEvent(s *Stream, e *Event) error {
	st, err := t.stream(s)
	if err == nil {
		err = t.event(e)
	}
	if err != nil {
		return err
	}
	return cuErr("cuStreamWaitEvent", st.Wait(e.h, 0))
}

// Elapsed is the device time between two recorded timing events
// (resolution about half a microsecond).
func (t *Thread) Elapsed(start, end *Event) (time.Duration, error) {
	if err := errors.Join(t.event(start), t.event(end)); err != nil {
		return 0, err
	}
	if !start.timing || !end.timing {
		return 0, errors.New("cuda: Elapsed needs events created with NewEvent(true)")
	}
	ms, err := start.h.Elapsed(end.h)
	if err != nil {
		return 0, cuErr("cuEventElapsedTime", err)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// LoadModule loads a PTX, cubin or fatbin image (as nvcc writes them) into
// the context. PTX is compiled for the device by the driver; its compiler
// messages are part of the error.
func (t *Thread) LoadModule(image []byte) (*Module, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if len(image) == 0 {
		return nil, errors.New("cuda: loading an empty module image")
	}
	logBuf := make([]byte, 16<<10)
	h, err := cu.LoadDataEx(string(image), &cu.JITErrorLogBuffer{Buffer: logBuf})
	if err != nil {
		err = cuErr("cuModuleLoadDataEx", err)
		if msg := bytes.TrimSpace(bytes.TrimRight(logBuf, "\x00")); len(msg) > 0 {
			err = fmt.Errorf("%w\n%s", err, msg)
		}
		return nil, err
	}
	m := &Module{w: t.w, h: h}
	t.w.modules[m] = true
	return m, nil
}

// UnloadModule unloads m; its Functions become invalid.
func (t *Thread) UnloadModule(m *Module) error {
	if m == nil || !t.w.modules[m] {
		return errors.Join(t.check(), errors.New("cuda: unloading a module this worker does not hold"))
	}
	delete(t.w.modules, m)
	return cuErr("cuModuleUnload", m.h.Unload())
}

// Function looks up kernel name (its extern "C" entry point) in m.
func (t *Thread) Function(m *Module, name string) (*Function, error) {
	if err := t.owns("module", m.owner()); err != nil {
		return nil, err
	}
	h, err := m.h.Function(name)
	if err != nil {
		return nil, fmt.Errorf("kernel %q: %w", name, cuErr("cuModuleGetFunction", err))
	}
	return &Function{m: m, h: h, name: name}, nil
}

// Launch queues kernel f on stream s with the given grid and block shapes,
// dynamic shared memory in bytes and arguments (see packArgs for the types
// accepted). The driver's answer is checked at every launch; with
// WithSyncAfterLaunch the launch also waits for the kernel and reports its
// faults. Either failure is a *LaunchError.
func (t *Thread) Launch(f *Function, grid, block Dim3, sharedMem uint32, s *Stream, args ...any) error {
	if f == nil {
		return errors.Join(t.check(), errors.New("cuda: launching a nil kernel"))
	}
	st, err := t.stream(s)
	if err == nil {
		err = t.owns("kernel", f.m.owner())
	}
	if err != nil {
		return err
	}
	if !t.w.modules[f.m] {
		return &LaunchError{Kernel: f.name, Grid: grid.norm(), Block: block.norm(), Err: errors.New("its module was unloaded")}
	}
	slots, err := packArgs(args)
	if err != nil {
		return &LaunchError{Kernel: f.name, Grid: grid.norm(), Block: block.norm(), Err: err}
	}
	params := make([]unsafe.Pointer, len(slots))
	for i := range slots {
		params[i] = unsafe.Pointer(&slots[i])
	}
	g, b := grid.norm(), block.norm()
	if err := f.h.Launch(int(g.X), int(g.Y), int(g.Z), int(b.X), int(b.Y), int(b.Z), int(sharedMem), st, params); err != nil {
		return &LaunchError{Kernel: f.name, Grid: g, Block: b, Err: cuErr("cuLaunchKernel", err)}
	}
	if t.w.opts.syncAfterLaunch {
		if err := st.Synchronize(); err != nil {
			return &LaunchError{Kernel: f.name, Grid: g, Block: b, Err: cuErr("cuStreamSynchronize", err)}
		}
	}
	return nil
}
