package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// datasheet lists device memory bandwidths (bytes/s) from NVIDIA's data
// sheets, by the words of the name the driver reports. More specific
// entries come first.
var datasheet = []struct {
	words     []string
	bandwidth float64
}{
	{[]string{"H200"}, 4.8e12},
	{[]string{"H100", "NVL"}, 3.9e12},
	{[]string{"H100", "PCIE"}, 2.0e12},
	{[]string{"H100", "HBM3"}, 3.35e12}, // "NVIDIA H100 80GB HBM3" is the SXM5 part
	{[]string{"A100", "80GB", "PCIE"}, 1.935e12},
	{[]string{"A100", "SXM4", "80GB"}, 2.039e12},
	{[]string{"A100"}, 1.555e12}, // the 40 GB parts
	{[]string{"L40S"}, 864e9},
	{[]string{"A10G"}, 600e9},
	{[]string{"A10"}, 600e9},
	{[]string{"L4"}, 300e9},
	{[]string{"T4"}, 320e9},
	{[]string{"V100"}, 900e9},
}

// DatasheetBandwidth returns the memory bandwidth NVIDIA's data sheet gives
// for a device name as the driver reports it ("NVIDIA H100 80GB HBM3"), in
// bytes per second, and false for a device it does not know.
func DatasheetBandwidth(name string) (float64, bool) {
	for _, e := range datasheet {
		all := true
		for _, w := range e.words {
			all = all && nameHasToken(name, w)
		}
		if all {
			return e.bandwidth, true
		}
	}
	return 0, false
}

// PCIeLink is a device's host link as the kernel reports it.
type PCIeLink struct {
	// GTs is the transfer rate per lane in GT/s (32 for PCIe 5.0).
	GTs   float64
	Width int
}

// Bandwidth is the link's theoretical payload bandwidth per direction in
// bytes per second, after line encoding (8b/10b up to 5 GT/s, 128b/130b
// above): 63 GB/s for PCIe 5.0 x16.
func (l PCIeLink) Bandwidth() float64 {
	eff := 128.0 / 130
	if l.GTs <= 5 {
		eff = 0.8
	}
	return l.GTs * 1e9 * eff * float64(l.Width) / 8
}

func (l PCIeLink) String() string { return fmt.Sprintf("%g GT/s x%d", l.GTs, l.Width) }

// MaxPCIeLink reads the fastest link a PCI device supports from sysfs
// (max_link_speed, max_link_width under /sys/bus/pci/devices/BUSID). The
// current link is not used because idle GPUs lower it to save power.
func MaxPCIeLink(busID string) (PCIeLink, error) {
	return readPCIeLink(filepath.Join("/sys/bus/pci/devices", strings.ToLower(busID)))
}

func readPCIeLink(dir string) (PCIeLink, error) {
	speed, err := os.ReadFile(filepath.Join(dir, "max_link_speed"))
	if err != nil {
		return PCIeLink{}, err
	}
	width, err := os.ReadFile(filepath.Join(dir, "max_link_width"))
	if err != nil {
		return PCIeLink{}, err
	}
	// "32.0 GT/s PCIe" (newer kernels) or "8 GT/s".
	f := strings.Fields(string(speed))
	if len(f) < 2 || f[1] != "GT/s" {
		return PCIeLink{}, fmt.Errorf("%s/max_link_speed: unexpected %q", dir, strings.TrimSpace(string(speed)))
	}
	var l PCIeLink
	if l.GTs, err = strconv.ParseFloat(f[0], 64); err != nil || l.GTs <= 0 {
		return PCIeLink{}, fmt.Errorf("%s/max_link_speed: unexpected %q", dir, strings.TrimSpace(string(speed)))
	}
	if l.Width, err = strconv.Atoi(strings.TrimSpace(string(width))); err != nil || l.Width <= 0 {
		return PCIeLink{}, fmt.Errorf("%s/max_link_width: unexpected %q", dir, strings.TrimSpace(string(width)))
	}
	return l, nil
}
