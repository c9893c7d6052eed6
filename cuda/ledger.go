package cuda

import (
	"fmt"
	"sync"
)

// MemStats is a worker's accounting of the memory it allocated. Memory that
// ONNX Runtime allocates in the same context is not included; see
// MemoryReport for the driver's view.
type MemStats struct {
	// DeviceBytes and DeviceBuffers are the live device allocations;
	// PeakDeviceBytes is the most DeviceBytes has been.
	DeviceBytes     uint64
	DeviceBuffers   int
	PeakDeviceBytes uint64
	// PinnedBytes and PinnedBuffers are the live page-locked host buffers.
	PinnedBytes   uint64
	PinnedBuffers int
	// Allocs and Frees count device allocations since the worker started.
	Allocs, Frees uint64
	// Limit is the cap set by WithMemoryLimit; 0 means none.
	Limit uint64
}

// ledger keeps the accounting. The worker thread alone changes it; any
// goroutine may read it.
type ledger struct {
	mu     sync.Mutex // guards following
	device map[DevicePtr]uint64
	pinned map[uintptr]uint64
	stats  MemStats
}

func newLedger(limit uint64) *ledger {
	return &ledger{device: make(map[DevicePtr]uint64), pinned: make(map[uintptr]uint64), stats: MemStats{Limit: limit}}
}

// admit checks that n more device bytes stay within the limit.
func (l *ledger) admit(n uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n == 0 {
		return fmt.Errorf("cuda: allocating 0 bytes")
	}
	if lim := l.stats.Limit; lim > 0 && (n > lim || l.stats.DeviceBytes > lim-n) {
		return fmt.Errorf("%w: allocating %s would pass the worker's limit of %s (%s in use)",
			ErrOutOfMemory, FormatBytes(n), FormatBytes(lim), FormatBytes(l.stats.DeviceBytes))
	}
	return nil
}

func (l *ledger) addDevice(p DevicePtr, n uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.device[p]; dup {
		return fmt.Errorf("cuda: accounting: device pointer %#x allocated twice", uintptr(p))
	}
	l.device[p] = n
	s := &l.stats
	s.DeviceBytes += n
	s.DeviceBuffers++
	s.Allocs++
	s.PeakDeviceBytes = max(s.PeakDeviceBytes, s.DeviceBytes)
	return nil
}

// removeDevice forgets p and returns its size; an unknown pointer (a double
// free, or memory this worker did not allocate) is an error.
func (l *ledger) removeDevice(p DevicePtr) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.device[p]
	if !ok {
		return 0, fmt.Errorf("cuda: freeing device pointer %#x that this worker does not own (freed twice?)", uintptr(p))
	}
	delete(l.device, p)
	l.stats.DeviceBytes -= n
	l.stats.DeviceBuffers--
	l.stats.Frees++
	return n, nil
}

func (l *ledger) addPinned(p uintptr, n uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.pinned[p]; dup {
		return fmt.Errorf("cuda: accounting: host pointer %#x allocated twice", p)
	}
	l.pinned[p] = n
	l.stats.PinnedBytes += n
	l.stats.PinnedBuffers++
	return nil
}

func (l *ledger) removePinned(p uintptr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.pinned[p]
	if !ok {
		return fmt.Errorf("cuda: freeing pinned host buffer %#x that this worker does not own (freed twice?)", p)
	}
	delete(l.pinned, p)
	l.stats.PinnedBytes -= n
	l.stats.PinnedBuffers--
	return nil
}

func (l *ledger) snapshot() MemStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}
