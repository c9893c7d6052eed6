package cuda

import (
	"math"
	"strings"
	"testing"
	"unsafe"
)

func TestPackArgs(t *testing.T) {
	buf := &DeviceBuffer{ptr: 0x7f0000001000}
	got, err := packArgs([]any{
		DevicePtr(0xdead0000), buf, int8(-1), uint8(200), int16(-2), uint16(60000),
		int32(-3), uint32(4000000000), int64(-4), uint64(1 << 63), float32(1.5), float64(-2.25),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{
		0xdead0000, 0x7f0000001000, 0xff, 200, 0xfffe, 60000,
		0xfffffffd, 4000000000, math.MaxUint64 - 3, 1 << 63,
		uint64(math.Float32bits(1.5)), math.Float64bits(-2.25),
	}
	if len(got) != len(want) {
		t.Fatalf("packArgs returned %d slots, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("slot %d = %#x, want %#x", i, got[i], want[i])
		}
	}
	// A kernel reads a 4-byte parameter from the first bytes of its slot.
	slot := got[10]
	if f := *(*float32)(unsafe.Pointer(&slot)); f != 1.5 {
		t.Errorf("float32 read back from its slot = %g", f)
	}
	for _, bad := range []struct {
		arg  any
		want string
	}{
		{7, "pass int32 or int64"},
		{uint(7), "pass int32 or int64"},
		{"x", "unsupported type string"},
		{(*DeviceBuffer)(nil), "nil *DeviceBuffer"},
		{[]float32{1}, "unsupported type"},
	} {
		if _, err := packArgs([]any{int32(0), bad.arg}); err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), "argument 1") {
			t.Errorf("packArgs(%T) error = %v, want one about argument 1 containing %q", bad.arg, err, bad.want)
		}
	}
	if got, err := packArgs(nil); err != nil || len(got) != 0 {
		t.Errorf("packArgs(nil) = %v, %v", got, err)
	}
}

func TestCheckRange(t *testing.T) {
	tests := []struct {
		off, n, size int64
		ok           bool
	}{
		{0, 10, 10, true},
		{10, 0, 10, true},
		{3, 7, 10, true},
		{3, 8, 10, false},
		{11, 0, 10, false},
		{-1, 1, 10, false},
		{0, -1, 10, false},
		{1, math.MaxInt64, 10, false}, // no overflow
	}
	for _, tt := range tests {
		if err := checkRange("x", tt.off, tt.n, tt.size); (err == nil) != tt.ok {
			t.Errorf("checkRange(%d, %d, %d) = %v, want ok=%v", tt.off, tt.n, tt.size, err, tt.ok)
		}
	}
}

func TestResourceOwners(t *testing.T) {
	w := &Worker{}
	if (&DeviceBuffer{w: w, ptr: 1}).owner() != w || (&DeviceBuffer{w: w}).owner() != nil || (*DeviceBuffer)(nil).owner() != nil {
		t.Error("DeviceBuffer.owner: want the worker for a live buffer, nil for a freed or nil one")
	}
	var x byte
	if (&HostBuffer{w: w, p: unsafe.Pointer(&x)}).owner() != w || (&HostBuffer{w: w}).owner() != nil || (*HostBuffer)(nil).owner() != nil {
		t.Error("HostBuffer.owner")
	}
	if (&Stream{w: w}).owner() != w || (*Stream)(nil).owner() != nil || (*Event)(nil).owner() != nil || (*Module)(nil).owner() != nil {
		t.Error("Stream, Event or Module owner")
	}
	h := &HostBuffer{p: unsafe.Pointer(&x), size: 1}
	if b := h.Bytes(); len(b) != 1 || &b[0] != &x {
		t.Error("HostBuffer.Bytes does not view the buffer")
	}
	if (&HostBuffer{}).Bytes() != nil {
		t.Error("Bytes of a freed HostBuffer is not nil")
	}
	d := &DeviceBuffer{ptr: 0x10, size: 64}
	if d.Ptr() != 0x10 || d.Size() != 64 || h.Size() != 1 || (&Function{name: "k"}).Name() != "k" {
		t.Error("accessors")
	}
}

func TestDim3(t *testing.T) {
	if got := (Dim3{X: 5}).String(); got != "(5,1,1)" {
		t.Errorf("Dim3{X: 5} = %s", got)
	}
	if got := (Dim3{}).norm(); got != (Dim3{1, 1, 1}) {
		t.Errorf("Dim3{}.norm() = %v", got)
	}
	if got := (Dim3{2, 3, 4}).String(); got != "(2,3,4)" {
		t.Errorf("Dim3{2,3,4} = %s", got)
	}
}
