package cuda

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kind is where a model runs.
type Kind int

const (
	// CPU runs on the host processor.
	CPU Kind = iota
	// GPU runs on a CUDA device.
	GPU
)

// Request is a parsed --device value: "auto", "cpu", "cuda" or "cuda:N".
// The zero value is "auto".
type Request struct {
	// Explicit is false for "auto".
	Explicit bool
	// Kind is what an explicit request asks for.
	Kind Kind
	// Index is the device asked for by "cuda:N"; -1 for "cuda" (the first
	// device).
	Index int
}

// ParseDevice parses a --device value. Matching is case-insensitive and
// ignores surrounding space; "gpu" and "gpu:N" are accepted for "cuda".
func ParseDevice(s string) (Request, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	switch v {
	case "", "auto":
		return Request{}, nil
	case "cpu":
		return Request{Explicit: true, Kind: CPU}, nil
	case "cuda", "gpu":
		return Request{Explicit: true, Kind: GPU, Index: -1}, nil
	}
	for _, prefix := range []string{"cuda:", "gpu:"} {
		if n, ok := strings.CutPrefix(v, prefix); ok {
			i, err := strconv.Atoi(n)
			if err != nil || i < 0 || n != strconv.Itoa(i) {
				return Request{}, fmt.Errorf("device %q: the index after %q must be a number 0 or above", s, prefix)
			}
			return Request{Explicit: true, Kind: GPU, Index: i}, nil
		}
	}
	return Request{}, fmt.Errorf("unknown device %q: want auto, cpu, cuda or cuda:N", s)
}

func (r Request) String() string {
	switch {
	case !r.Explicit:
		return "auto"
	case r.Kind == CPU:
		return "cpu"
	case r.Index < 0:
		return "cuda"
	}
	return "cuda:" + strconv.Itoa(r.Index)
}

// Placement is the device chosen for a Request.
type Placement struct {
	Kind Kind
	// Device is the chosen GPU; zero for CPU.
	Device Device
	// Request is what was asked for.
	Request Request
	// Reason says why a CPU placement was chosen, for the log: the
	// request, or what made "auto" fall back.
	Reason string
}

// String is "cpu" or "cuda:N".
func (p Placement) String() string {
	if p.Kind == CPU {
		return "cpu"
	}
	return "cuda:" + strconv.Itoa(p.Device.Index)
}

// Select decides where to run from a request and the result of Probe:
//
//   - cpu: the CPU, whatever the inventory says.
//   - auto: the first GPU of the inventory; the CPU when Probe failed or found
//     none, with the reason in Placement.Reason.
//   - cuda: the first GPU; an error wrapping probeErr (ErrNoCUDA) when there is
//     none.
//   - cuda:N: device N; an error when Probe failed or N is not in the
//     inventory.
//
// A cuda-tagged binary needs the driver library just to start, so "auto" in
// the container image of Dockerfile.cuda means the GPU whenever the container
// was given one; an untagged binary always reports ErrNoCUDA, so "auto" means
// the CPU there and "cuda" fails.
func Select(req Request, devices []Device, probeErr error) (Placement, error) {
	if req.Explicit && req.Kind == CPU {
		return Placement{Kind: CPU, Request: req, Reason: "--device cpu"}, nil
	}
	if probeErr == nil && len(devices) == 0 {
		probeErr = fmt.Errorf("%w: the driver reports no GPU", ErrNoCUDA)
	}
	if probeErr != nil {
		if !req.Explicit {
			return Placement{Kind: CPU, Request: req, Reason: probeErr.Error()}, nil
		}
		return Placement{}, fmt.Errorf("--device %s: %w", req, probeErr)
	}
	if !req.Explicit || req.Index < 0 {
		return Placement{Kind: GPU, Device: devices[0], Request: req}, nil
	}
	for _, d := range devices {
		if d.Index == req.Index {
			return Placement{Kind: GPU, Device: d, Request: req}, nil
		}
	}
	have := make([]string, len(devices))
	for i, d := range devices {
		have[i] = "cuda:" + strconv.Itoa(d.Index)
	}
	return Placement{}, fmt.Errorf("--device %s: %w: this host has %s", req, ErrNoSuchDevice, strings.Join(have, ", "))
}

// ErrNoSuchDevice is wrapped when --device cuda:N names a device the host
// does not have.
var ErrNoSuchDevice = errors.New("no such CUDA device")

// Fallback applies the rule for a GPU placement whose ONNX Runtime execution
// provider could not be set up (providerErr, typically wrapping
// engine.ErrProviderUnavailable: a CPU-only runtime library, or the provider
// library or one of its CUDA libraries missing). "auto" moves to the CPU and
// says why in Reason; an explicit cuda or cuda:N fails with providerErr. A
// CPU placement is returned unchanged.
func (p Placement) Fallback(providerErr error) (Placement, error) {
	if p.Kind == CPU || providerErr == nil {
		return p, nil
	}
	if p.Request.Explicit {
		return Placement{}, fmt.Errorf("--device %s: %w", p.Request, providerErr)
	}
	return Placement{Kind: CPU, Request: p.Request,
		Reason: fmt.Sprintf("found %s but ONNX Runtime cannot use it: %v", p.Device.Name, providerErr)}, nil
}
