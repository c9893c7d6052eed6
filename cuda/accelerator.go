package cuda

import (
	"fmt"
	"strconv"
	"strings"
)

// Accelerator is config.yaml's resources.accelerator: a GPU type and count,
// written "H100", "A10G:2" or "H100_40GB:8" in Truss. The zero value asks for
// no GPU.
type Accelerator struct {
	// Type is the GPU type in upper case ("A10G", "H100_40GB").
	Type  string
	Count int
}

// knownAccelerators are the types Truss accepts (truss_config.Accelerator).
// A type outside the list is accepted, since Truss adds types, but marked
// unknown in Describe.
var knownAccelerators = map[string]bool{
	"T4": true, "L4": true, "A10G": true, "V100": true, "A100": true, "A100_40GB": true,
	"H100": true, "H100_40GB": true, "H200": true, "B200": true, "L40S": true,
}

// ParseAccelerator parses resources.accelerator. An empty value is the zero
// Accelerator.
func ParseAccelerator(s string) (Accelerator, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Accelerator{}, nil
	}
	typ, count, hasCount := strings.Cut(s, ":")
	a := Accelerator{Type: strings.ToUpper(strings.TrimSpace(typ)), Count: 1}
	if a.Type == "" || strings.ContainsAny(a.Type, " \t/") {
		return Accelerator{}, fmt.Errorf("resources.accelerator %q: want a GPU type such as H100 or A10G:2", s)
	}
	if hasCount {
		n, err := strconv.Atoi(strings.TrimSpace(count))
		if err != nil || n < 1 {
			return Accelerator{}, fmt.Errorf("resources.accelerator %q: the count after ':' must be a number 1 or above", s)
		}
		a.Count = n
	}
	return a, nil
}

// String renders the accelerator as Truss writes it: "H100", "A10G:2", or ""
// for none.
func (a Accelerator) String() string {
	switch {
	case a.Type == "":
		return ""
	case a.Count <= 1:
		return a.Type
	}
	return a.Type + ":" + strconv.Itoa(a.Count)
}

// Known reports whether Type is one Truss documents.
func (a Accelerator) Known() bool { return knownAccelerators[a.Type] }

// family is the type without its memory variant: "H100_40GB" → "H100".
func (a Accelerator) family() string {
	f, _, _ := strings.Cut(a.Type, "_")
	return f
}

// Check compares the request with the devices found and returns nil when
// they satisfy it, or an error describing the mismatch, for a warning: fewer
// devices than Count, or devices whose name does not carry the type. A
// deployment sees only the GPUs it was given, so more devices than asked is
// fine.
func (a Accelerator) Check(devices []Device) error {
	if a.Type == "" {
		return nil
	}
	if len(devices) < a.Count {
		return fmt.Errorf("config.yaml asks for %s but %d GPU(s) are visible", a, len(devices))
	}
	family := a.family()
	for _, d := range devices {
		if !nameHasToken(d.Name, family) {
			return fmt.Errorf("config.yaml asks for %s but cuda:%d is %s", a, d.Index, d.Name)
		}
	}
	return nil
}

// nameHasToken reports whether a device name such as "NVIDIA H100 80GB HBM3"
// or "NVIDIA A100-SXM4-80GB" holds token as one of its words.
func nameHasToken(name, token string) bool {
	words := strings.FieldsFunc(strings.ToUpper(name), func(r rune) bool {
		return r == ' ' || r == '-' || r == '_'
	})
	for _, w := range words {
		if w == token {
			return true
		}
	}
	return false
}
