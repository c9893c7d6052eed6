package cuda

import (
	"strings"
	"testing"
)

func TestParseAccelerator(t *testing.T) {
	tests := []struct {
		in    string
		want  Accelerator
		known bool
		err   bool
	}{
		{"", Accelerator{}, false, false},
		{"H100", Accelerator{"H100", 1}, true, false},
		{"A10G:2", Accelerator{"A10G", 2}, true, false},
		{" h100_40gb : 8 ", Accelerator{"H100_40GB", 8}, true, false},
		{"L40S", Accelerator{"L40S", 1}, true, false},
		{"GB300:4", Accelerator{"GB300", 4}, false, false}, // a type newer than the list
		{"H100:0", Accelerator{}, false, true},
		{"H100:-1", Accelerator{}, false, true},
		{"H100:x", Accelerator{}, false, true},
		{"H100:", Accelerator{}, false, true},
		{":2", Accelerator{}, false, true},
		{"NVIDIA H100", Accelerator{}, false, true},
	}
	for _, tt := range tests {
		got, err := ParseAccelerator(tt.in)
		if tt.err {
			if err == nil || !strings.Contains(err.Error(), "resources.accelerator") {
				t.Errorf("ParseAccelerator(%q) = %+v, %v; want an error naming resources.accelerator", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want || got.Known() != tt.known {
			t.Errorf("ParseAccelerator(%q) = %+v (known %v), %v; want %+v (known %v)", tt.in, got, got.Known(), err, tt.want, tt.known)
		}
	}
}

func TestAcceleratorString(t *testing.T) {
	for in, want := range map[string]string{"": "", "H100": "H100", "a10g:2": "A10G:2", "T4:1": "T4"} {
		a, err := ParseAccelerator(in)
		if err != nil || a.String() != want {
			t.Errorf("ParseAccelerator(%q).String() = %q, %v; want %q", in, a.String(), err, want)
		}
	}
}

func TestAcceleratorCheck(t *testing.T) {
	h100 := Device{Index: 0, Name: "NVIDIA H100 80GB HBM3"}
	h100pcie := Device{Index: 1, Name: "NVIDIA H100 PCIe"}
	a10g := Device{Index: 0, Name: "NVIDIA A10G"}
	a100 := Device{Index: 0, Name: "NVIDIA A100-SXM4-80GB"}
	tests := []struct {
		acc     string
		devices []Device
		want    string // "" means no mismatch
	}{
		{"", nil, ""},
		{"H100", []Device{h100}, ""},
		{"H100_40GB", []Device{h100pcie}, ""},
		{"H100:2", []Device{h100, h100pcie}, ""},
		{"H100", []Device{h100, h100pcie}, ""}, // more than asked is fine
		{"A100", []Device{a100}, ""},
		{"A10G", []Device{a10g}, ""},
		{"H100:2", []Device{h100}, "asks for H100:2 but 1 GPU(s) are visible"},
		{"H100", nil, "asks for H100 but 0 GPU(s) are visible"},
		{"A10G", []Device{h100}, "asks for A10G but cuda:0 is NVIDIA H100 80GB HBM3"},
		{"A10", []Device{a10g}, "cuda:0 is NVIDIA A10G"}, // A10 is not A10G
		{"H200", []Device{h100}, "asks for H200"},
	}
	for _, tt := range tests {
		a, err := ParseAccelerator(tt.acc)
		if err != nil {
			t.Fatal(err)
		}
		err = a.Check(tt.devices)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("ParseAccelerator(%q).Check(%d devices) = %v, want %q", tt.acc, len(tt.devices), err, tt.want)
		}
	}
}
