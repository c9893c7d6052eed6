package oip

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/modelserver/modelserver/engine"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
	"github.com/modelserver/modelserver/tensor"
)

// Parameter names this package interprets.
const (
	// ParamBinaryData is the requested-output parameter that selects the
	// representation of one output (bool).
	ParamBinaryData = "binary_data"
	// ParamBinaryDataOutput is the HTTP request parameter that makes binary
	// the default for every output (bool).
	ParamBinaryDataOutput = "binary_data_output"
	// ParamBinaryDataSize is the HTTP tensor parameter giving the byte size
	// of a tensor in the binary section (int64).
	ParamBinaryDataSize = "binary_data_size"
)

// DecodeInputs returns the input tensors of req by name. Inputs come from
// raw_input_contents (one entry per input, in order, used in place) or from
// each input's typed contents (copied into a new buffer); FP16 and BF16 only
// from raw contents. Errors wrap engine.ErrInvalidInput and name the input.
func DecodeInputs(req *pb.ModelInferRequest) (map[string]tensor.Tensor, error) {
	raw := req.GetRawInputContents()
	ins := req.GetInputs()
	if len(raw) > 0 && len(raw) != len(ins) {
		return nil, fmt.Errorf("%w: raw_input_contents has %d entries for %d inputs; it needs one per input, in order",
			engine.ErrInvalidInput, len(raw), len(ins))
	}
	inputs := make(map[string]tensor.Tensor, len(ins))
	for i, in := range ins {
		name := in.GetName()
		if name == "" {
			return nil, fmt.Errorf("%w: input %d has no name", engine.ErrInvalidInput, i)
		}
		if _, dup := inputs[name]; dup {
			return nil, fmt.Errorf("%w: input %q is given twice", engine.ErrInvalidInput, name)
		}
		d, err := DType(in.GetDatatype())
		if err != nil {
			return nil, fmt.Errorf("%w: input %q: %w", engine.ErrInvalidInput, name, err)
		}
		shape := in.GetShape()
		size, err := tensor.ByteSize(d, shape)
		if err != nil {
			return nil, fmt.Errorf("%w: input %q: %w", engine.ErrInvalidInput, name, err)
		}
		var data []byte
		if len(raw) > 0 {
			if n := contentsLen(in.GetContents()); n > 0 {
				return nil, fmt.Errorf("%w: input %q sets contents while the request uses raw_input_contents; use one or the other",
					engine.ErrInvalidInput, name)
			}
			if len(raw[i]) != size {
				return nil, fmt.Errorf("%w: input %q: raw content has %d bytes, %s %s needs %d",
					engine.ErrInvalidInput, name, len(raw[i]), in.GetDatatype(), formatShape(shape), size)
			}
			data = raw[i]
		} else {
			data, err = decodeContents(in.GetContents(), d, int64(size/d.Size()))
			if err != nil {
				return nil, fmt.Errorf("%w: input %q: %s %s: %w", engine.ErrInvalidInput, name, in.GetDatatype(), formatShape(shape), err)
			}
		}
		inputs[name] = tensor.Tensor{DType: d, Shape: shape, Data: data}
	}
	return inputs, nil
}

// OutputSelection says which outputs a gRPC response carries and how.
type OutputSelection struct {
	// Names lists the outputs to return, in response order.
	Names []string
	// Typed selects typed InferTensorContents over raw_output_contents.
	Typed bool
}

// SelectOutputs resolves the outputs req asks for against sig: all of
// sig's outputs in signature order when req names none, else the named ones
// in request order. See the package documentation for when outputs are
// typed. Errors wrap engine.ErrInvalidInput.
func SelectOutputs(req *pb.ModelInferRequest, sig engine.Signature) (OutputSelection, error) {
	requested := req.GetOutputs()
	if len(requested) == 0 {
		sel := OutputSelection{Names: make([]string, len(sig.Outputs))}
		for i, o := range sig.Outputs {
			sel.Names[i] = o.Name
		}
		return sel, nil
	}
	sel := OutputSelection{Names: make([]string, 0, len(requested))}
	specs := make([]engine.TensorSpec, 0, len(requested))
	var typed, raw []string
	for _, o := range requested {
		spec, err := requestedOutput(sig, o.GetName(), sel.Names)
		if err != nil {
			return OutputSelection{}, err
		}
		binaryData, set, err := BoolParameter(o.GetParameters(), ParamBinaryData)
		if err != nil {
			return OutputSelection{}, fmt.Errorf("%w: output %q: %w", engine.ErrInvalidInput, spec.Name, err)
		}
		switch {
		case set && !binaryData:
			typed = append(typed, spec.Name)
		case set:
			raw = append(raw, spec.Name)
		}
		sel.Names = append(sel.Names, spec.Name)
		specs = append(specs, spec)
	}
	if len(typed) == 0 {
		return sel, nil
	}
	if len(raw) > 0 {
		return OutputSelection{}, fmt.Errorf("%w: outputs %s ask binary_data=false and %s binary_data=true; a response carries either raw or typed contents, not both",
			engine.ErrInvalidInput, quoteAll(typed), quoteAll(raw))
	}
	for _, spec := range specs {
		if spec.DType == tensor.Float16 || spec.DType == tensor.BFloat16 {
			dt, _ := Datatype(spec.DType)
			return OutputSelection{}, fmt.Errorf("%w: output %q is %s, which has no typed contents field; do not ask binary_data=false for this request",
				engine.ErrInvalidInput, spec.Name, dt)
		}
	}
	sel.Typed = true
	return sel, nil
}

// requestedOutput returns the spec of a requested output, rejecting
// unknown names and names already in taken.
func requestedOutput(sig engine.Signature, name string, taken []string) (engine.TensorSpec, error) {
	for _, t := range taken {
		if t == name {
			return engine.TensorSpec{}, fmt.Errorf("%w: output %q is requested twice", engine.ErrInvalidInput, name)
		}
	}
	names := make([]string, len(sig.Outputs))
	for i, o := range sig.Outputs {
		if o.Name == name {
			return o, nil
		}
		names[i] = o.Name
	}
	return engine.TensorSpec{}, fmt.Errorf("%w: unknown output %q (model outputs: %s)", engine.ErrInvalidInput, name, quoteAll(names))
}

// EncodeOutputs appends the selected outputs to resp: their metadata to
// resp.Outputs and, unless sel.Typed, their data to resp.RawOutputContents
// (in place, not copied). Every selected output must be in outputs; a
// missing or malformed one is the model's fault, so the error does not wrap
// engine.ErrInvalidInput.
func EncodeOutputs(resp *pb.ModelInferResponse, sel OutputSelection, outputs map[string]tensor.Tensor) error {
	for _, name := range sel.Names {
		t, ok := outputs[name]
		if !ok {
			return fmt.Errorf("output %q is missing from the model's result", name)
		}
		if err := t.Validate(); err != nil {
			return fmt.Errorf("output %q: %w", name, err)
		}
		dt, err := Datatype(t.DType)
		if err != nil {
			return fmt.Errorf("output %q: %w", name, err)
		}
		out := &pb.ModelInferResponse_InferOutputTensor{Name: name, Datatype: dt, Shape: t.Shape}
		if out.Shape == nil {
			out.Shape = []int64{}
		}
		if sel.Typed {
			out.Contents, err = encodeContents(t)
			if err != nil {
				return fmt.Errorf("output %q: %w", name, err)
			}
		} else {
			resp.RawOutputContents = append(resp.RawOutputContents, t.Data)
		}
		resp.Outputs = append(resp.Outputs, out)
	}
	return nil
}

// BoolParameter reads the optional bool parameter key: set is false when
// it is absent, and an error (not wrapping anything) reports a parameter
// of another type.
func BoolParameter(params map[string]*pb.InferParameter, key string) (value, set bool, err error) {
	p, ok := params[key]
	if !ok || p == nil || p.GetParameterChoice() == nil {
		return false, false, nil
	}
	b, ok := p.GetParameterChoice().(*pb.InferParameter_BoolParam)
	if !ok {
		return false, false, fmt.Errorf("parameter %q must be a bool_param", key)
	}
	return b.BoolParam, true, nil
}

// contentsFields names the typed fields in InferTensorContents order.
var contentsFields = [...]string{"bool_contents", "int_contents", "int64_contents", "uint_contents",
	"uint64_contents", "fp32_contents", "fp64_contents", "bytes_contents"}

func contentsLens(c *pb.InferTensorContents) [len(contentsFields)]int {
	return [...]int{len(c.GetBoolContents()), len(c.GetIntContents()), len(c.GetInt64Contents()), len(c.GetUintContents()),
		len(c.GetUint64Contents()), len(c.GetFp32Contents()), len(c.GetFp64Contents()), len(c.GetBytesContents())}
}

func contentsLen(c *pb.InferTensorContents) int {
	n := 0
	for _, l := range contentsLens(c) {
		n += l
	}
	return n
}

// contentsField returns the index in contentsFields of d's typed field, -1
// for FP16 and BF16.
func contentsField(d tensor.DType) int {
	switch d {
	case tensor.Bool:
		return 0
	case tensor.Int8, tensor.Int16, tensor.Int32:
		return 1
	case tensor.Int64:
		return 2
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		return 3
	case tensor.Uint64:
		return 4
	case tensor.Float32:
		return 5
	case tensor.Float64:
		return 6
	}
	return -1
}

// decodeContents copies n elements of dtype d out of c's typed field for d,
// after checking that the field holds exactly n elements and that no other
// field is set.
func decodeContents(c *pb.InferTensorContents, d tensor.DType, n int64) ([]byte, error) {
	lens := contentsLens(c)
	field := contentsField(d)
	if field < 0 {
		if contentsLen(c) == 0 && n == 0 {
			return []byte{}, nil
		}
		return nil, fmt.Errorf("16-bit floats have no typed contents field; send the tensor in raw_input_contents")
	}
	var other []string
	for i, l := range lens {
		if i != field && l > 0 {
			other = append(other, contentsFields[i])
		}
	}
	if len(other) > 0 {
		return nil, fmt.Errorf("elements belong in %s, but %s is set", contentsFields[field], strings.Join(other, " and "))
	}
	if int64(lens[field]) != n {
		if lens[field] == 0 {
			return nil, fmt.Errorf("no data: set %s or use raw_input_contents", contentsFields[field])
		}
		return nil, fmt.Errorf("needs %d elements, %s holds %d", n, contentsFields[field], lens[field])
	}
	size := d.Size()
	data := make([]byte, int(n)*size)
	switch d {
	case tensor.Bool:
		for i, v := range c.GetBoolContents() {
			if v {
				data[i] = 1
			}
		}
	case tensor.Int8, tensor.Int16, tensor.Int32:
		lo, hi := int32(math.MinInt32), int32(math.MaxInt32)
		switch d {
		case tensor.Int8:
			lo, hi = math.MinInt8, math.MaxInt8
		case tensor.Int16:
			lo, hi = math.MinInt16, math.MaxInt16
		}
		for i, v := range c.GetIntContents() {
			if v < lo || v > hi {
				return nil, fmt.Errorf("element %d is %d, outside the range of %s", i, v, d)
			}
			putUint(data[i*size:], size, uint64(v))
		}
	case tensor.Int64:
		for i, v := range c.GetInt64Contents() {
			binary.LittleEndian.PutUint64(data[i*8:], uint64(v))
		}
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		hi := uint32(math.MaxUint32)
		switch d {
		case tensor.Uint8:
			hi = math.MaxUint8
		case tensor.Uint16:
			hi = math.MaxUint16
		}
		for i, v := range c.GetUintContents() {
			if v > hi {
				return nil, fmt.Errorf("element %d is %d, outside the range of %s", i, v, d)
			}
			putUint(data[i*size:], size, uint64(v))
		}
	case tensor.Uint64:
		for i, v := range c.GetUint64Contents() {
			binary.LittleEndian.PutUint64(data[i*8:], v)
		}
	case tensor.Float32:
		for i, v := range c.GetFp32Contents() {
			binary.LittleEndian.PutUint32(data[i*4:], math.Float32bits(v))
		}
	case tensor.Float64:
		for i, v := range c.GetFp64Contents() {
			binary.LittleEndian.PutUint64(data[i*8:], math.Float64bits(v))
		}
	}
	return data, nil
}

// putUint writes the low size bytes of v little-endian.
func putUint(b []byte, size int, v uint64) {
	switch size {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(b, uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b, uint32(v))
	default:
		binary.LittleEndian.PutUint64(b, v)
	}
}

// encodeContents converts a valid tensor into its typed contents.
func encodeContents(t tensor.Tensor) (*pb.InferTensorContents, error) {
	n := int(t.NumElements())
	b := t.Data
	c := &pb.InferTensorContents{}
	switch t.DType {
	case tensor.Bool:
		c.BoolContents = make([]bool, n)
		for i := range n {
			c.BoolContents[i] = b[i] != 0
		}
	case tensor.Int8:
		c.IntContents = make([]int32, n)
		for i := range n {
			c.IntContents[i] = int32(int8(b[i]))
		}
	case tensor.Int16:
		c.IntContents = make([]int32, n)
		for i := range n {
			c.IntContents[i] = int32(int16(binary.LittleEndian.Uint16(b[2*i:])))
		}
	case tensor.Int32:
		c.IntContents = make([]int32, n)
		for i := range n {
			c.IntContents[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case tensor.Int64:
		c.Int64Contents = make([]int64, n)
		for i := range n {
			c.Int64Contents[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		}
	case tensor.Uint8:
		c.UintContents = make([]uint32, n)
		for i := range n {
			c.UintContents[i] = uint32(b[i])
		}
	case tensor.Uint16:
		c.UintContents = make([]uint32, n)
		for i := range n {
			c.UintContents[i] = uint32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case tensor.Uint32:
		c.UintContents = make([]uint32, n)
		for i := range n {
			c.UintContents[i] = binary.LittleEndian.Uint32(b[4*i:])
		}
	case tensor.Uint64:
		c.Uint64Contents = make([]uint64, n)
		for i := range n {
			c.Uint64Contents[i] = binary.LittleEndian.Uint64(b[8*i:])
		}
	case tensor.Float32:
		c.Fp32Contents = make([]float32, n)
		for i := range n {
			c.Fp32Contents[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case tensor.Float64:
		c.Fp64Contents = make([]float64, n)
		for i := range n {
			c.Fp64Contents[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
	default:
		return nil, fmt.Errorf("dtype %s has no typed contents field", t.DType)
	}
	return c, nil
}

// formatShape writes a shape as the protocol does: [2,3].
func formatShape(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, d)
	}
	b.WriteByte(']')
	return b.String()
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
