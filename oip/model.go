package oip

import (
	"context"
	"errors"
	"fmt"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/tensor"
)

// Predictor runs a validated request (batching.Batcher implements it).
// It must return ctx's error when ctx ends first.
type Predictor interface {
	Predict(ctx context.Context, inputs map[string]tensor.Tensor) (map[string]tensor.Tensor, error)
}

// Streamer runs a request whose answer is a sequence of chunks
// (batching.StreamLimiter implements it); see engine.StreamingModel for the
// emit contract.
type Streamer interface {
	Stream(ctx context.Context, inputs map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) error
}

// Model is the served model as the protocol names and describes it.
// Exactly one of Predictor and Streamer is set.
type Model struct {
	// Name is the name clients address the model by. Required.
	Name string
	// Version is the one version served. Default DefaultVersion.
	Version string
	// Platform is reported in model metadata. Default DefaultPlatform.
	Platform  string
	Signature engine.Signature
	Predictor Predictor
	Streamer  Streamer
}

// Defaults of Model.
const (
	// DefaultVersion is the version reported for a model that sets none.
	DefaultVersion = "1"
	// DefaultPlatform is the platform Triton reports for ONNX Runtime models.
	DefaultPlatform = "onnxruntime_onnx"
)

// Errors shared by the OIP transports.
var (
	// ErrModelNotFound: the request names a model or version that is not
	// served. HTTP 404, gRPC NOT_FOUND.
	ErrModelNotFound = errors.New("model not found")
	// ErrUnsupported: the request needs something the model or transport
	// does not offer, such as one answer from a model that streams (as
	// Triton answers for decoupled models). HTTP 501, gRPC UNIMPLEMENTED.
	ErrUnsupported = errors.New("unsupported")
)

// WithDefaults returns m with Version and Platform defaulted.
func (m Model) WithDefaults() Model {
	if m.Version == "" {
		m.Version = DefaultVersion
	}
	if m.Platform == "" {
		m.Platform = DefaultPlatform
	}
	return m
}

// Lookup checks that name and version address m (after WithDefaults): the
// name must be m.Name and the version empty or m.Version. Errors wrap
// ErrModelNotFound.
func (m Model) Lookup(name, version string) error {
	if name != m.Name {
		return fmt.Errorf("%w: unknown model %q (this server serves %q)", ErrModelNotFound, name, m.Name)
	}
	if version != "" && version != m.Version {
		return fmt.Errorf("%w: model %q has no version %q (served version: %q)", ErrModelNotFound, name, version, m.Version)
	}
	return nil
}

// TensorMetadata is one input or output as model metadata reports it.
type TensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// Metadata is the model metadata response, in the JSON form of the HTTP
// protocol; the gRPC ModelMetadataResponse has the same fields.
type Metadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions"`
	Platform string           `json:"platform"`
	Inputs   []TensorMetadata `json:"inputs"`
	Outputs  []TensorMetadata `json:"outputs"`
}

// ModelMetadata describes m (after WithDefaults). Dynamic dimensions are
// -1. It fails only for a dtype without OIP datatype.
func ModelMetadata(m Model) (Metadata, error) {
	md := Metadata{Name: m.Name, Versions: []string{m.Version}, Platform: m.Platform,
		Inputs: []TensorMetadata{}, Outputs: []TensorMetadata{}}
	for _, list := range []struct {
		specs []engine.TensorSpec
		dst   *[]TensorMetadata
	}{{m.Signature.Inputs, &md.Inputs}, {m.Signature.Outputs, &md.Outputs}} {
		for _, spec := range list.specs {
			dt, err := Datatype(spec.DType)
			if err != nil {
				return Metadata{}, fmt.Errorf("tensor %q: %w", spec.Name, err)
			}
			shape := make([]int64, len(spec.Shape))
			for i, d := range spec.Shape {
				shape[i] = max(d, -1)
			}
			*list.dst = append(*list.dst, TensorMetadata{Name: spec.Name, Datatype: dt, Shape: shape})
		}
	}
	return md, nil
}
