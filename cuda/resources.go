package cuda

import (
	"fmt"
	"math"
	"unsafe"
)

// DeviceBuffer is device memory allocated by Thread.Alloc. It belongs to its
// worker and is freed by Thread.Free or, at the latest, by Worker.Stop.
type DeviceBuffer struct {
	w    *Worker
	ptr  DevicePtr
	size int64
}

// Ptr is the buffer's device address.
func (b *DeviceBuffer) Ptr() DevicePtr { return b.ptr }

// Size is the buffer's length in bytes.
func (b *DeviceBuffer) Size() int64 { return b.size }

// HostBuffer is page-locked ("pinned") host memory allocated by
// Thread.AllocHost, which asynchronous copies need. Bytes is valid until the
// buffer is freed by Thread.FreeHost or Worker.Stop.
type HostBuffer struct {
	w    *Worker
	p    unsafe.Pointer
	size int64
}

// Bytes views the buffer as a Go slice without copying.
func (b *HostBuffer) Bytes() []byte {
	if b.p == nil {
		return nil
	}
	return unsafe.Slice((*byte)(b.p), b.size)
}

// Size is the buffer's length in bytes.
func (b *HostBuffer) Size() int64 { return b.size }

// Stream is a CUDA stream: work queued on one stream runs in order,
// asynchronously to the host. A nil *Stream means the context's default
// (legacy) stream wherever a stream is taken.
type Stream struct {
	w *Worker
	h streamHandle
}

// Event marks a point in a stream, to wait for or to time.
type Event struct {
	w      *Worker
	h      eventHandle
	timing bool
}

// Module is a loaded PTX, cubin or fatbin image.
type Module struct {
	w *Worker
	h moduleHandle
}

// Function is a kernel of a Module.
type Function struct {
	m    *Module
	h    functionHandle
	name string
}

// Name is the kernel's entry point name.
func (f *Function) Name() string { return f.name }

// owner returns the worker a resource belongs to, nil for a nil or freed
// one; Thread methods compare it with their own worker.
func (b *DeviceBuffer) owner() *Worker {
	if b == nil || b.ptr == 0 {
		return nil
	}
	return b.w
}

func (b *HostBuffer) owner() *Worker {
	if b == nil || b.p == nil {
		return nil
	}
	return b.w
}

func (s *Stream) owner() *Worker {
	if s == nil {
		return nil
	}
	return s.w
}

func (e *Event) owner() *Worker {
	if e == nil {
		return nil
	}
	return e.w
}

func (m *Module) owner() *Worker {
	if m == nil {
		return nil
	}
	return m.w
}

// checkRange reports whether [off, off+n) lies within size.
func checkRange(what string, off, n, size int64) error {
	if off < 0 || n < 0 || off > size || n > size-off {
		return fmt.Errorf("cuda: %s range [%d, %d+%d) is outside the buffer's %d bytes", what, off, off, n, size)
	}
	return nil
}

// packArgs turns kernel arguments into the 8-byte slots that cuLaunchKernel
// reads them from: each value sits in the low bytes of its slot, which is
// where a little-endian kernel parameter of its size is read. Plain int and
// uint are refused because their width differs from C's int.
func packArgs(args []any) ([]uint64, error) {
	slots := make([]uint64, len(args))
	for i, a := range args {
		var v uint64
		switch x := a.(type) {
		case DevicePtr:
			v = uint64(x)
		case *DeviceBuffer:
			if x == nil {
				return nil, fmt.Errorf("cuda: kernel argument %d is a nil *DeviceBuffer", i)
			}
			v = uint64(x.ptr)
		case int8:
			v = uint64(uint8(x))
		case uint8:
			v = uint64(x)
		case int16:
			v = uint64(uint16(x))
		case uint16:
			v = uint64(x)
		case int32:
			v = uint64(uint32(x))
		case uint32:
			v = uint64(x)
		case int64:
			v = uint64(x)
		case uint64:
			v = x
		case float32:
			v = uint64(math.Float32bits(x))
		case float64:
			v = math.Float64bits(x)
		case int, uint:
			return nil, fmt.Errorf("cuda: kernel argument %d is a Go %T; pass int32 or int64 to match the kernel's parameter", i, a)
		default:
			return nil, fmt.Errorf("cuda: kernel argument %d has unsupported type %T", i, a)
		}
		slots[i] = v
	}
	return slots, nil
}
