package cuda

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestDatasheetBandwidth(t *testing.T) {
	tests := []struct {
		name string
		want float64 // 0: unknown
	}{
		{"NVIDIA H100 80GB HBM3", 3.35e12},
		{"NVIDIA H100 PCIe", 2.0e12},
		{"NVIDIA H100 NVL", 3.9e12},
		{"NVIDIA H200", 4.8e12},
		{"NVIDIA A100-SXM4-80GB", 2.039e12},
		{"NVIDIA A100 80GB PCIe", 1.935e12},
		{"NVIDIA A100-PCIE-40GB", 1.555e12},
		{"NVIDIA A10G", 600e9},
		{"NVIDIA L4", 300e9},
		{"NVIDIA L40S", 864e9},
		{"Tesla T4", 320e9},
		{"Tesla V100-SXM2-16GB", 900e9},
		{"NVIDIA GeForce RTX 4090", 0},
		{"NVIDIA L40", 0}, // not L4, not L40S
	}
	for _, tt := range tests {
		got, ok := DatasheetBandwidth(tt.name)
		if ok != (tt.want != 0) || got != tt.want {
			t.Errorf("DatasheetBandwidth(%q) = %g, %v; want %g", tt.name, got, ok, tt.want)
		}
	}
}

func TestPeakMemoryBandwidth(t *testing.T) {
	// What the driver reports for an H100 SXM5 and an A10G.
	h100 := Device{MemoryClockKHz: 2619000, MemoryBusWidth: 5120}
	if got := h100.PeakMemoryBandwidth(); math.Abs(got-3.352e12) > 1e9 {
		t.Errorf("H100 peak = %g, want 3.352e12", got)
	}
	a10g := Device{MemoryClockKHz: 6251000, MemoryBusWidth: 384}
	if got := a10g.PeakMemoryBandwidth(); math.Abs(got-600.1e9) > 1e9 {
		t.Errorf("A10G peak = %g, want 600e9", got)
	}
	if (Device{}).PeakMemoryBandwidth() != 0 {
		t.Error("unknown attributes should give 0")
	}
}

func TestPCIeLink(t *testing.T) {
	for _, tt := range []struct {
		speed, width string
		want         PCIeLink
		gbps         float64
		err          bool
	}{
		{"32.0 GT/s PCIe\n", "16\n", PCIeLink{32, 16}, 63.0, false},
		{"16.0 GT/s PCIe\n", "16\n", PCIeLink{16, 16}, 31.5, false},
		{"8 GT/s\n", "16\n", PCIeLink{8, 16}, 15.75, false},
		{"5 GT/s\n", "8\n", PCIeLink{5, 8}, 4.0, false},
		{"Unknown\n", "16\n", PCIeLink{}, 0, true},
		{"32.0 GT/s PCIe\n", "x16\n", PCIeLink{}, 0, true},
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "max_link_speed"), []byte(tt.speed), 0o644)
		os.WriteFile(filepath.Join(dir, "max_link_width"), []byte(tt.width), 0o644)
		got, err := readPCIeLink(dir)
		if tt.err {
			if err == nil {
				t.Errorf("readPCIeLink(%q, %q) = %v, want an error", tt.speed, tt.width, got)
			}
			continue
		}
		if err != nil || got != tt.want || math.Abs(got.Bandwidth()/1e9-tt.gbps) > 0.05 {
			t.Errorf("readPCIeLink(%q, %q) = %v (%.2f GB/s), %v; want %v (%.2f GB/s)", tt.speed, tt.width, got, got.Bandwidth()/1e9, err, tt.want, tt.gbps)
		}
	}
	if _, err := readPCIeLink(t.TempDir()); err == nil {
		t.Error("readPCIeLink of an empty directory succeeded")
	}
	if _, err := MaxPCIeLink("0000:FF:1F.7-not-there"); err == nil {
		t.Error("MaxPCIeLink of a missing device succeeded")
	}
}
