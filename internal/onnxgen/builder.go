package onnxgen

import (
	"fmt"
	"io"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/modelserver/modelserver/internal/onnxpb"
	"github.com/modelserver/modelserver/tensor"
)

// IRVersion is the ONNX IR version of every model a Builder writes: the
// newest that onnxpb's schema describes, read by every ONNX Runtime since 1.10.
const IRVersion = 8

// Dim is one dimension of a graph input or output: a fixed size or a named
// symbolic size. Inputs and outputs that share a symbolic name have the same
// size in every run. The zero value is Fixed(0).
type Dim struct {
	size     int64
	name     string
	symbolic bool
}

// Fixed returns a dimension of size n.
func Fixed(n int64) Dim { return Dim{size: n} }

// Sym returns a symbolic dimension whose size each run chooses.
func Sym(name string) Dim { return Dim{name: name, symbolic: true} }

// Attr is a node attribute, made by Int, Ints, Float or String.
type Attr struct {
	p *onnxpb.AttributeProto
}

// Int returns an INT attribute.
func Int(name string, v int64) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INT, I: v}}
}

// Ints returns an INTS attribute.
func Ints(name string, v ...int64) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: append([]int64(nil), v...)}}
}

// Float returns a FLOAT attribute.
func Float(name string, v float32) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOAT, F: v}}
}

// String returns a STRING attribute.
func String(name, v string) Attr {
	return Attr{&onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_STRING, S: []byte(v)}}
}

// Builder assembles one ONNX graph. Its methods record the first misuse
// (a duplicate or empty name, an invalid dtype or dimension, a tensor whose
// data does not match its shape) and Bytes reports it, so a model is built
// without checking every call. A Builder is not safe for concurrent use.
type Builder struct {
	opset int64
	// domainOpsets holds the version imported for each non-default operator
	// domain (ImportDomain).
	domainOpsets map[string]int64
	graph        onnxpb.GraphProto
	// defined holds every value name produced so far (graph inputs,
	// initializers and node outputs); ONNX graphs are in SSA form and list
	// nodes in topological order, so each name is defined once, before use.
	defined map[string]bool
	outputs map[string]bool
	err     error
}

// NewBuilder starts a graph named graphName that imports opset of the
// default ONNX operator domain.
func NewBuilder(graphName string, opset int64) *Builder {
	b := &Builder{opset: opset, domainOpsets: make(map[string]int64), defined: make(map[string]bool), outputs: make(map[string]bool)}
	b.graph.Name = graphName
	if opset < 1 {
		b.fail(fmt.Errorf("opset %d: must be at least 1", opset))
	}
	return b
}

func (b *Builder) fail(err error) {
	if b.err == nil {
		b.err = fmt.Errorf("onnxgen: graph %q: %w", b.graph.Name, err)
	}
}

func (b *Builder) define(kind, name string) bool {
	switch {
	case name == "":
		b.fail(fmt.Errorf("%s with an empty name", kind))
		return false
	case b.defined[name]:
		b.fail(fmt.Errorf("%s %q: the name is already defined", kind, name))
		return false
	}
	b.defined[name] = true
	return true
}

// Input declares a graph input.
func (b *Builder) Input(name string, dt tensor.DType, dims ...Dim) {
	if !b.define("input", name) {
		return
	}
	if vi, err := valueInfo(name, dt, dims); err != nil {
		b.fail(fmt.Errorf("input %q: %w", name, err))
	} else {
		b.graph.Input = append(b.graph.Input, vi)
	}
}

// Output declares a graph output. The value must be defined (by an input, an
// initializer or a node) by the time Bytes is called.
func (b *Builder) Output(name string, dt tensor.DType, dims ...Dim) {
	if name == "" || b.outputs[name] {
		b.fail(fmt.Errorf("output %q: empty or already declared", name))
		return
	}
	b.outputs[name] = true
	if vi, err := valueInfo(name, dt, dims); err != nil {
		b.fail(fmt.Errorf("output %q: %w", name, err))
	} else {
		b.graph.Output = append(b.graph.Output, vi)
	}
}

// Initializer adds a constant tensor, stored as raw little-endian bytes. The
// data is copied, so t may be reused afterwards.
func (b *Builder) Initializer(name string, t tensor.Tensor) {
	if !b.define("initializer", name) {
		return
	}
	dt, ok := onnxDType(t.DType)
	if !ok {
		b.fail(fmt.Errorf("initializer %q: invalid dtype %v", name, t.DType))
		return
	}
	if err := t.Validate(); err != nil {
		b.fail(fmt.Errorf("initializer %q: %w", name, err))
		return
	}
	b.graph.Initializer = append(b.graph.Initializer, &onnxpb.TensorProto{
		Name:     name,
		DataType: int32(dt),
		Dims:     append([]int64(nil), t.Shape...),
		RawData:  append([]byte(nil), t.Data...),
	})
}

// ImportDomain imports version of a non-default operator domain, such as
// ONNX Runtime's "com.microsoft" contrib operators, for DomainNode.
func (b *Builder) ImportDomain(domain string, version int64) {
	if domain == "" || version < 1 || b.domainOpsets[domain] != 0 {
		b.fail(fmt.Errorf("domain %q version %d: needs a name, a positive version and one import", domain, version))
		return
	}
	b.domainOpsets[domain] = version
}

// Node appends an operator of the default domain. Each input must already be
// defined, except "", which ONNX uses for an omitted optional input (or
// output).
func (b *Builder) Node(op string, inputs, outputs []string, attrs ...Attr) {
	b.DomainNode("", op, inputs, outputs, attrs...)
}

// DomainNode appends an operator of domain, which ImportDomain must have
// imported ("" is the default domain). Inputs and outputs are as for Node.
func (b *Builder) DomainNode(domain, op string, inputs, outputs []string, attrs ...Attr) {
	if op == "" || len(outputs) == 0 {
		b.fail(fmt.Errorf("node %q: a node needs an op type and at least one output", op))
		return
	}
	if domain != "" && b.domainOpsets[domain] == 0 {
		b.fail(fmt.Errorf("node %q: domain %q is not imported", op, domain))
		return
	}
	n := &onnxpb.NodeProto{
		Name:   fmt.Sprintf("%s_%d", op, len(b.graph.Node)),
		OpType: op,
		Domain: domain,
		Input:  append([]string(nil), inputs...),
		Output: append([]string(nil), outputs...),
	}
	for _, in := range inputs {
		if in != "" && !b.defined[in] {
			b.fail(fmt.Errorf("node %s: input %q is not defined yet", n.Name, in))
			return
		}
	}
	seen := make(map[string]bool, len(attrs))
	for _, a := range attrs {
		if a.p == nil || a.p.Name == "" || seen[a.p.Name] {
			b.fail(fmt.Errorf("node %s: attribute without a name, or given twice", n.Name))
			return
		}
		seen[a.p.Name] = true
		n.Attribute = append(n.Attribute, a.p)
	}
	for _, out := range outputs {
		if out != "" && !b.define("node "+n.Name+" output", out) {
			return
		}
	}
	b.graph.Node = append(b.graph.Node, n)
}

// Bytes returns the serialized ModelProto, or the first misuse of the
// Builder. The encoding is deterministic: the same calls give the same bytes.
func (b *Builder) Bytes() ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(b.model(&b.graph))
}

// externalAlign is the offset alignment of each tensor in an external data
// file: a page, so that the runtime may map the file instead of copying it.
const externalAlign = 4096

// BytesExternal is Bytes with the data of every initializer of at least
// minBytes bytes written to data instead, the layout of ONNX external data:
// each such initializer records location (the data file's name, relative to
// the directory of the model file), its offset in data (a multiple of 4096;
// zero bytes pad the gaps) and its length. A model written this way must be
// loaded from a file path beside its data file, not from bytes.
func (b *Builder) BytesExternal(location string, data io.Writer, minBytes int) ([]byte, error) {
	if location == "" {
		return nil, fmt.Errorf("onnxgen: graph %q: external data needs a location", b.graph.Name)
	}
	if err := b.validate(); err != nil {
		return nil, err
	}
	// The copy shares everything but the initializers, which are the only
	// part that differs, and leaves b's graph as it was.
	graph := &onnxpb.GraphProto{
		Name:        b.graph.Name,
		Node:        b.graph.Node,
		Input:       b.graph.Input,
		Output:      b.graph.Output,
		Initializer: make([]*onnxpb.TensorProto, len(b.graph.Initializer)),
	}
	var offset int64
	var zeros [externalAlign]byte
	for i, init := range b.graph.Initializer {
		if len(init.RawData) < minBytes {
			graph.Initializer[i] = init
			continue
		}
		if pad := (externalAlign - offset%externalAlign) % externalAlign; pad > 0 {
			if _, err := data.Write(zeros[:pad]); err != nil {
				return nil, fmt.Errorf("onnxgen: writing external data: %w", err)
			}
			offset += pad
		}
		if _, err := data.Write(init.RawData); err != nil {
			return nil, fmt.Errorf("onnxgen: writing external data: %w", err)
		}
		graph.Initializer[i] = &onnxpb.TensorProto{
			Name:         init.Name,
			DataType:     init.DataType,
			Dims:         init.Dims,
			DataLocation: onnxpb.TensorProto_EXTERNAL,
			ExternalData: []*onnxpb.StringStringEntryProto{
				{Key: "location", Value: location},
				{Key: "offset", Value: fmt.Sprint(offset)},
				{Key: "length", Value: fmt.Sprint(len(init.RawData))},
			},
		}
		offset += int64(len(init.RawData))
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(b.model(graph))
}

// validate returns the first misuse of the Builder, or a graph that is not
// complete.
func (b *Builder) validate() error {
	if b.err != nil {
		return b.err
	}
	if len(b.graph.Output) == 0 {
		return fmt.Errorf("onnxgen: graph %q has no outputs", b.graph.Name)
	}
	for _, o := range b.graph.Output {
		if !b.defined[o.Name] {
			return fmt.Errorf("onnxgen: graph %q: output %q is not produced by any input, initializer or node", b.graph.Name, o.Name)
		}
	}
	return nil
}

// model wraps graph, which is b's graph or a copy of it, in a ModelProto.
func (b *Builder) model(graph *onnxpb.GraphProto) *onnxpb.ModelProto {
	opsets := []*onnxpb.OperatorSetIdProto{{Domain: "", Version: b.opset}}
	domains := make([]string, 0, len(b.domainOpsets))
	for d := range b.domainOpsets {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	for _, d := range domains {
		opsets = append(opsets, &onnxpb.OperatorSetIdProto{Domain: d, Version: b.domainOpsets[d]})
	}
	return &onnxpb.ModelProto{
		IrVersion:    IRVersion,
		ProducerName: "modelserver/onnxgen",
		OpsetImport:  opsets,
		Graph:        graph,
	}
}

func valueInfo(name string, dt tensor.DType, dims []Dim) (*onnxpb.ValueInfoProto, error) {
	et, ok := onnxDType(dt)
	if !ok {
		return nil, fmt.Errorf("invalid dtype %v", dt)
	}
	// A rank-0 value still gets an (empty) shape: a missing shape means
	// "rank unknown".
	shape := &onnxpb.TensorShapeProto{}
	for i, d := range dims {
		var pd *onnxpb.TensorShapeProto_Dimension
		switch {
		case d.symbolic && d.name == "":
			return nil, fmt.Errorf("symbolic dimension %d has an empty name", i)
		case d.symbolic:
			pd = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d.name}}
		case d.size >= 0:
			pd = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d.size}}
		default:
			return nil, fmt.Errorf("dimension %d has negative size %d", i, d.size)
		}
		shape.Dim = append(shape.Dim, pd)
	}
	return &onnxpb.ValueInfoProto{
		Name: name,
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: int32(et),
			Shape:    shape,
		}}},
	}, nil
}

func onnxDType(d tensor.DType) (onnxpb.TensorProto_DataType, bool) {
	switch d {
	case tensor.Bool:
		return onnxpb.TensorProto_BOOL, true
	case tensor.Int8:
		return onnxpb.TensorProto_INT8, true
	case tensor.Int16:
		return onnxpb.TensorProto_INT16, true
	case tensor.Int32:
		return onnxpb.TensorProto_INT32, true
	case tensor.Int64:
		return onnxpb.TensorProto_INT64, true
	case tensor.Uint8:
		return onnxpb.TensorProto_UINT8, true
	case tensor.Uint16:
		return onnxpb.TensorProto_UINT16, true
	case tensor.Uint32:
		return onnxpb.TensorProto_UINT32, true
	case tensor.Uint64:
		return onnxpb.TensorProto_UINT64, true
	case tensor.Float16:
		return onnxpb.TensorProto_FLOAT16, true
	case tensor.BFloat16:
		return onnxpb.TensorProto_BFLOAT16, true
	case tensor.Float32:
		return onnxpb.TensorProto_FLOAT, true
	case tensor.Float64:
		return onnxpb.TensorProto_DOUBLE, true
	case tensor.Complex64:
		return onnxpb.TensorProto_COMPLEX64, true
	case tensor.Complex128:
		return onnxpb.TensorProto_COMPLEX128, true
	}
	return onnxpb.TensorProto_UNDEFINED, false
}
