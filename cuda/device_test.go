package cuda

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseDevice(t *testing.T) {
	tests := []struct {
		in   string
		want Request
		err  string
	}{
		{"auto", Request{}, ""},
		{"", Request{}, ""},
		{" AUTO ", Request{}, ""},
		{"cpu", Request{Explicit: true, Kind: CPU}, ""},
		{"cuda", Request{Explicit: true, Kind: GPU, Index: -1}, ""},
		{"gpu", Request{Explicit: true, Kind: GPU, Index: -1}, ""},
		{"cuda:0", Request{Explicit: true, Kind: GPU, Index: 0}, ""},
		{"CUDA:3", Request{Explicit: true, Kind: GPU, Index: 3}, ""},
		{"gpu:1", Request{Explicit: true, Kind: GPU, Index: 1}, ""},
		{"cuda:", Request{}, "must be a number"},
		{"cuda:-1", Request{}, "must be a number"},
		{"cuda:01", Request{}, "must be a number"},
		{"cuda:x", Request{}, "must be a number"},
		{"cuda:1:2", Request{}, "must be a number"},
		{"tpu", Request{}, "want auto, cpu, cuda or cuda:N"},
		{"cuda0", Request{}, "want auto, cpu, cuda or cuda:N"},
	}
	for _, tt := range tests {
		got, err := ParseDevice(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseDevice(%q) = %+v, %v; want an error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDevice(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestRequestStringRoundTrip(t *testing.T) {
	for _, s := range []string{"auto", "cpu", "cuda", "cuda:0", "cuda:7"} {
		r, err := ParseDevice(s)
		if err != nil || r.String() != s {
			t.Errorf("ParseDevice(%q).String() = %q, %v", s, r.String(), err)
		}
	}
}

var (
	h100a = Device{Index: 0, Name: "NVIDIA H100 80GB HBM3"}
	h100b = Device{Index: 1, Name: "NVIDIA H100 80GB HBM3"}
)

// TestSelect is the table of --device rules: the request, what Probe
// returned, and then whether ONNX Runtime's CUDA provider could be added.
func TestSelect(t *testing.T) {
	noDriver := fmt.Errorf("%w: cuInit failed with CUDA_ERROR_NO_DEVICE", ErrNoCUDA)
	providerMissing := errors.New("execution provider unavailable: libonnxruntime_providers_cuda.so: cannot open shared object file")
	tests := []struct {
		name        string
		device      string
		devices     []Device
		probeErr    error
		providerErr error // nil: the provider was added
		want        string
		wantErr     error  // errors.Is target; nil with errText "" means success
		errText     string // substring of the error or of Reason
	}{
		{"auto with GPUs picks the first", "auto", []Device{h100a, h100b}, nil, nil, "cuda:0", nil, ""},
		{"auto without driver runs on the CPU", "auto", nil, noDriver, nil, "cpu", nil, "CUDA_ERROR_NO_DEVICE"},
		{"auto with an empty inventory runs on the CPU", "auto", nil, nil, nil, "cpu", nil, "no GPU"},
		{"auto falls back when the provider is missing", "auto", []Device{h100a}, nil, providerMissing, "cpu", nil, "libonnxruntime_providers_cuda.so"},
		{"cpu ignores GPUs", "cpu", []Device{h100a}, nil, nil, "cpu", nil, "--device cpu"},
		{"cpu without driver", "cpu", nil, noDriver, nil, "cpu", nil, ""},
		{"cuda picks the first GPU", "cuda", []Device{h100a, h100b}, nil, nil, "cuda:0", nil, ""},
		{"cuda without driver fails", "cuda", nil, noDriver, nil, "", ErrNoCUDA, "--device cuda: "},
		{"cuda with an empty inventory fails", "cuda", nil, nil, nil, "", ErrNoCUDA, "no GPU"},
		{"cuda fails when the provider is missing", "cuda", []Device{h100a}, nil, providerMissing, "", nil, "--device cuda: execution provider unavailable"},
		{"cuda:1 picks device 1", "cuda:1", []Device{h100a, h100b}, nil, nil, "cuda:1", nil, ""},
		{"cuda:2 on a two-GPU host fails", "cuda:2", []Device{h100a, h100b}, nil, nil, "", ErrNoSuchDevice, "cuda:0, cuda:1"},
		{"cuda:0 without driver fails", "cuda:0", nil, noDriver, nil, "", ErrNoCUDA, ""},
		{"cuda:1 fails when the provider is missing", "cuda:1", []Device{h100a, h100b}, nil, providerMissing, "", nil, "--device cuda:1: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := ParseDevice(tt.device)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Select(req, tt.devices, tt.probeErr)
			if err == nil && tt.providerErr != nil {
				p, err = p.Fallback(tt.providerErr)
			}
			if tt.want == "" {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("got %v, %v; want an error (%v) containing %q", p, err, tt.wantErr, tt.errText)
				}
				if tt.providerErr != nil && !errors.Is(err, tt.providerErr) {
					t.Errorf("error %v does not wrap the provider's error", err)
				}
				return
			}
			if err != nil || p.String() != tt.want {
				t.Fatalf("got %v, %v; want %s", p, err, tt.want)
			}
			if p.Kind == CPU && !strings.Contains(p.Reason, tt.errText) {
				t.Errorf("Reason %q does not contain %q", p.Reason, tt.errText)
			}
			if p.Kind == GPU && p.Device.Name != h100a.Name {
				t.Errorf("placement device %+v", p.Device)
			}
			if p.Request != req {
				t.Errorf("placement request %v, want %v", p.Request, req)
			}
		})
	}
}

func TestFallbackKeepsCPUPlacements(t *testing.T) {
	p := Placement{Kind: CPU, Reason: "--device cpu"}
	got, err := p.Fallback(errors.New("x"))
	if err != nil || got != p {
		t.Errorf("Fallback of a CPU placement = %+v, %v", got, err)
	}
}
