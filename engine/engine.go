// Package engine runs models. It defines what a loaded model looks like to the
// rest of the server (Model, Signature) and implements it on ONNX Runtime.
//
// Contract:
//   - A Model is loaded once and is safe for concurrent Run calls; callers
//     bound concurrency themselves (see package batching).
//   - Run validates nothing beyond what the runtime itself checks: callers
//     validate inputs against Signature first (Signature.Check).
//   - Input tensors are read during Run only; the engine never keeps or
//     mutates them. Output tensors are owned by the caller.
//   - Run honours ctx: a cancelled context aborts a run in flight where the
//     runtime allows it and returns ctx's error.
package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/modelserver/modelserver/tensor"
)

// DynamicDim marks a dimension whose size is chosen per request.
const DynamicDim = -1

// TensorSpec describes one model input or output.
type TensorSpec struct {
	Name  string
	DType tensor.DType
	// Shape holds the size of each dimension, DynamicDim where it varies.
	Shape []int64
	// DimNames holds the symbolic name of each dynamic dimension ("batch"),
	// "" where the model names none. Same length as Shape.
	DimNames []string
}

// Signature lists a model's inputs and outputs in the model's order.
type Signature struct {
	Inputs  []TensorSpec
	Outputs []TensorSpec
}

// Model is a loaded model.
type Model interface {
	Signature() Signature
	// Run executes the model once. inputs holds every input of the
	// signature; the result holds every output.
	Run(ctx context.Context, inputs map[string]tensor.Tensor) (map[string]tensor.Tensor, error)
	// Close releases the model's resources. Run must not be called after.
	Close() error
}

// ErrInvalidInput is wrapped by every error that blames the request's tensors
// (unknown or missing input, dtype, rank or dimension mismatch).
var ErrInvalidInput = errors.New("invalid input")

// ErrRuntime is wrapped by errors raised inside the runtime while executing a
// model that accepted its inputs.
var ErrRuntime = errors.New("model execution failed")

// Check validates a request's tensors against the signature: every input
// present, no unknown name, dtype, rank and fixed dimensions equal. Errors
// wrap ErrInvalidInput and name the input, the expected and the received
// dtype or shape.
func (s Signature) Check(inputs map[string]tensor.Tensor) error {
	known := make(map[string]bool, len(s.Inputs))
	for _, spec := range s.Inputs {
		known[spec.Name] = true
		t, ok := inputs[spec.Name]
		if !ok {
			return fmt.Errorf("%w: missing input %q (expected %s %s)", ErrInvalidInput, spec.Name, spec.DType, tensor.ShapeString(spec.Shape))
		}
		if t.DType != spec.DType {
			return fmt.Errorf("%w: input %q: expected dtype %s, received %s", ErrInvalidInput, spec.Name, spec.DType, t.DType)
		}
		if len(t.Shape) != len(spec.Shape) {
			return fmt.Errorf("%w: input %q: expected rank %d shape %s, received rank %d shape %s",
				ErrInvalidInput, spec.Name, len(spec.Shape), tensor.ShapeString(spec.Shape), len(t.Shape), tensor.ShapeString(t.Shape))
		}
		for i, d := range spec.Shape {
			if d != DynamicDim && t.Shape[i] != d {
				return fmt.Errorf("%w: input %q: expected shape %s, received %s (dimension %d)",
					ErrInvalidInput, spec.Name, tensor.ShapeString(spec.Shape), tensor.ShapeString(t.Shape), i)
			}
		}
		if err := t.Validate(); err != nil {
			return fmt.Errorf("%w: input %q: %v", ErrInvalidInput, spec.Name, err)
		}
		if t.DType == tensor.Bool {
			for i, b := range t.Data {
				if b > 1 {
					return fmt.Errorf("%w: input %q: bool element %d is %d, not 0 or 1", ErrInvalidInput, spec.Name, i, b)
				}
			}
		}
	}
	if len(inputs) != len(s.Inputs) {
		var unknown []string
		for name := range inputs {
			if !known[name] {
				unknown = append(unknown, fmt.Sprintf("%q", name))
			}
		}
		sort.Strings(unknown)
		return fmt.Errorf("%w: unknown input %s (model inputs: %s)", ErrInvalidInput, strings.Join(unknown, ", "), s.inputNames())
	}
	return nil
}

// Input returns the spec of the named input.
func (s Signature) Input(name string) (TensorSpec, bool) {
	for _, spec := range s.Inputs {
		if spec.Name == name {
			return spec, true
		}
	}
	return TensorSpec{}, false
}

func (s Signature) inputNames() string {
	names := make([]string, len(s.Inputs))
	for i, spec := range s.Inputs {
		names[i] = fmt.Sprintf("%q", spec.Name)
	}
	return strings.Join(names, ", ")
}
