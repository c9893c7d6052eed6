//go:build !cuda

package cuda

import (
	"fmt"
	"time"
)

// Built reports whether this binary was built with the cuda tag.
const Built = false

// errNotBuilt is what every entry point of this build returns.
var errNotBuilt = fmt.Errorf("%w: this modelserver was built without CUDA support (build with -tags cuda on a machine with the CUDA toolkit, or use the image of Dockerfile.cuda)", ErrNoCUDA)

type (
	deviceState    struct{}
	streamHandle   struct{}
	eventHandle    struct{}
	moduleHandle   struct{}
	functionHandle struct{}
)

// Probe reports the driver, the CUDA runtime library and every visible GPU;
// without the cuda build tag it reports ErrNoCUDA.
func Probe() (Inventory, error) { return Inventory{}, errNotBuilt }

// Devices lists the GPUs; without the cuda build tag it reports ErrNoCUDA.
func Devices() ([]Device, error) { return nil, errNotBuilt }

// Open starts the worker of GPU index; without the cuda build tag it reports
// ErrNoCUDA.
func Open(index int, opts ...Option) (*Worker, error) { return nil, errNotBuilt }

// The Thread methods below exist so that code using them builds without the
// tag; no Thread of a real device exists in such a build.

// MemInfo returns the device's free and total memory.
func (t *Thread) MemInfo() (free, total uint64, err error) { return 0, 0, errNotBuilt }

// Synchronize waits for all work queued in the context.
func (t *Thread) Synchronize() error { return errNotBuilt }

// Alloc allocates n bytes of device memory.
func (t *Thread) Alloc(n int64) (*DeviceBuffer, error) { return nil, errNotBuilt }

// Free frees a buffer from Alloc.
func (t *Thread) Free(b *DeviceBuffer) error { return errNotBuilt }

// AllocHost allocates n bytes of page-locked host memory.
func (t *Thread) AllocHost(n int64) (*HostBuffer, error) { return nil, errNotBuilt }

// FreeHost frees a buffer from AllocHost.
func (t *Thread) FreeHost(b *HostBuffer) error { return errNotBuilt }

// Memset queues setting every byte of dst to value on stream s.
func (t *Thread) Memset(dst *DeviceBuffer, value byte, s *Stream) error { return errNotBuilt }

// CopyHtoD copies src into dst at dstOff.
func (t *Thread) CopyHtoD(dst *DeviceBuffer, dstOff int64, src []byte) error { return errNotBuilt }

// CopyDtoH fills dst from src at srcOff.
func (t *Thread) CopyDtoH(dst []byte, src *DeviceBuffer, srcOff int64) error { return errNotBuilt }

// CopyDtoD copies n bytes between device buffers.
func (t *Thread) CopyDtoD(dst *DeviceBuffer, dstOff int64, src *DeviceBuffer, srcOff, n int64) error {
	return errNotBuilt
}

// CopyHtoDAsync queues a copy from pinned host memory to the device.
func (t *Thread) CopyHtoDAsync(dst *DeviceBuffer, dstOff int64, src *HostBuffer, srcOff, n int64, s *Stream) error {
	return errNotBuilt
}

// CopyDtoHAsync queues a copy from the device to pinned host memory.
func (t *Thread) CopyDtoHAsync(dst *HostBuffer, dstOff int64, src *DeviceBuffer, srcOff, n int64, s *Stream) error {
	return errNotBuilt
}

// CopyDtoDAsync queues a copy between device buffers.
func (t *Thread) CopyDtoDAsync(dst *DeviceBuffer, dstOff int64, src *DeviceBuffer, srcOff, n int64, s *Stream) error {
	return errNotBuilt
}

// NewStream creates a stream.
func (t *Thread) NewStream() (*Stream, error) { return nil, errNotBuilt }

// DestroyStream destroys s.
func (t *Thread) DestroyStream(s *Stream) error { return errNotBuilt }

// SyncStream waits for the work queued on s.
func (t *Thread) SyncStream(s *Stream) error { return errNotBuilt }

// NewEvent creates an event.
func (t *Thread) NewEvent(timing bool) (*Event, error) { return nil, errNotBuilt }

// DestroyEvent destroys e.
func (t *Thread) DestroyEvent(e *Event) error { return errNotBuilt }

// Record queues e on stream s.
func (t *Thread) Record(e *Event, s *Stream) error { return errNotBuilt }

// SyncEvent waits for e.
func (t *Thread) SyncEvent(e *Event) error { return errNotBuilt }

// WaitEvent makes future work on s wait for e.
func (t *Thread) WaitEvent(s *Stream, e *Event) error { return errNotBuilt }

// Elapsed is the device time between two recorded timing events.
func (t *Thread) Elapsed(start, end *Event) (time.Duration, error) { return 0, errNotBuilt }

// LoadModule loads a PTX, cubin or fatbin image.
func (t *Thread) LoadModule(image []byte) (*Module, error) { return nil, errNotBuilt }

// UnloadModule unloads m.
func (t *Thread) UnloadModule(m *Module) error { return errNotBuilt }

// Function looks up kernel name in m.
func (t *Thread) Function(m *Module, name string) (*Function, error) { return nil, errNotBuilt }

// Launch queues kernel f on stream s.
func (t *Thread) Launch(f *Function, grid, block Dim3, sharedMem uint32, s *Stream, args ...any) error {
	return errNotBuilt
}
