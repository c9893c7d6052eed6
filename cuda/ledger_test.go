package cuda

import (
	"errors"
	"testing"
)

func TestLedgerAccounting(t *testing.T) {
	l := newLedger(0)
	for _, a := range []struct {
		p DevicePtr
		n uint64
	}{{0x1000, 100}, {0x2000, 300}, {0x3000, 50}} {
		if err := l.admit(a.n); err != nil {
			t.Fatal(err)
		}
		if err := l.addDevice(a.p, a.n); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := l.removeDevice(0x2000); n != 300 || err != nil {
		t.Fatalf("removeDevice(0x2000) = %d, %v", n, err)
	}
	if err := l.addPinned(0xa000, 4096); err != nil {
		t.Fatal(err)
	}
	want := MemStats{DeviceBytes: 150, DeviceBuffers: 2, PeakDeviceBytes: 450, PinnedBytes: 4096, PinnedBuffers: 1, Allocs: 3, Frees: 1}
	if got := l.snapshot(); got != want {
		t.Errorf("snapshot = %+v, want %+v", got, want)
	}
	if _, err := l.removeDevice(0x2000); err == nil {
		t.Error("removing a pointer twice succeeded")
	}
	if err := l.addDevice(0x1000, 1); err == nil {
		t.Error("adding a live pointer again succeeded")
	}
	if err := l.removePinned(0xa000); err != nil {
		t.Fatal(err)
	}
	if err := l.removePinned(0xa000); err == nil {
		t.Error("removing a pinned buffer twice succeeded")
	}
	if err := l.addPinned(0xb000, 1); err != nil || l.addPinned(0xb000, 1) == nil {
		t.Error("adding a live pinned pointer again succeeded")
	}
	if err := l.admit(0); err == nil {
		t.Error("admitting 0 bytes succeeded")
	}
	if got := l.snapshot(); got.DeviceBytes != 150 || got.PeakDeviceBytes != 450 || got.PinnedBytes != 1 {
		t.Errorf("after the failures snapshot = %+v", got)
	}
}

func TestLedgerLimit(t *testing.T) {
	l := newLedger(1000)
	if err := l.admit(1000); err != nil {
		t.Fatalf("admit(limit) = %v", err)
	}
	if err := l.admit(1001); !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("admit(limit+1) = %v, want ErrOutOfMemory", err)
	}
	if err := l.addDevice(1, 600); err != nil {
		t.Fatal(err)
	}
	if err := l.admit(400); err != nil {
		t.Errorf("admit(400) with 600 of 1000 used = %v", err)
	}
	if err := l.admit(401); !errors.Is(err, ErrOutOfMemory) {
		t.Errorf("admit(401) with 600 of 1000 used = %v, want ErrOutOfMemory", err)
	}
	if err := l.admit(^uint64(0)); !errors.Is(err, ErrOutOfMemory) {
		t.Errorf("admit(max) = %v, want ErrOutOfMemory (no overflow)", err)
	}
}
