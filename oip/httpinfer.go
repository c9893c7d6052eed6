package oip

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/httpbody"
	"github.com/modelserver/modelserver/tensor"
)

// httpRequest is a decoded HTTP inference request.
type httpRequest struct {
	id      string
	inputs  map[string]tensor.Tensor
	outputs []httpOutput
}

// httpOutput is one output to return and whether it goes to the binary
// section.
type httpOutput struct {
	name   string
	binary bool
}

// The JSON forms of the protocol's inference request.
type (
	jsonInferRequest struct {
		ID         string                     `json:"id"`
		Parameters map[string]json.RawMessage `json:"parameters"`
		Inputs     []jsonInput                `json:"inputs"`
		Outputs    []jsonRequestedOutput      `json:"outputs"`
	}
	jsonInput struct {
		Name       string                     `json:"name"`
		Shape      *[]int64                   `json:"shape"`
		Datatype   string                     `json:"datatype"`
		Parameters map[string]json.RawMessage `json:"parameters"`
		Data       json.RawMessage            `json:"data"`
	}
	jsonRequestedOutput struct {
		Name       string                     `json:"name"`
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
)

func (h *Handler) handleInfer(w http.ResponseWriter, r *http.Request) {
	m, err := h.lookup(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if m.Predictor == nil {
		h.writeError(w, r, fmt.Errorf("%w: model %q streams its answer in chunks, which /infer cannot return; use gRPC ModelStreamInfer",
			ErrUnsupported, m.Name))
		return
	}
	body, err := httpbody.Read(w, r, h.opts.MaxRequestBytes)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	req, err := decodeHTTPRequest(body, r.Header.Values(HeaderInferenceHeaderContentLength), m.Signature)
	if err == nil {
		err = m.Signature.Check(req.inputs)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	if h.opts.PredictTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.opts.PredictTimeout)
		defer cancel()
	}
	outputs, err := m.Predictor.Predict(ctx, req.inputs)
	if err != nil {
		if r.Context().Err() != nil {
			// The client left, or a server shutdown's grace period ran out
			// (shutdown.ErrShuttingDown); a deadline that fired too is moot.
			err = context.Cause(r.Context())
		}
		h.writeError(w, r, err)
		return
	}
	header, blobs, err := encodeHTTPResponse(&m.Model, req, outputs)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if len(blobs) == 0 {
		writeJSON(w, http.StatusOK, header)
		return
	}
	total := len(header)
	for _, b := range blobs {
		total += len(b)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(HeaderInferenceHeaderContentLength, strconv.Itoa(len(header)))
	w.Header().Set("Content-Length", strconv.Itoa(total))
	w.WriteHeader(http.StatusOK)
	w.Write(header)
	for _, b := range blobs {
		w.Write(b)
	}
}

// decodeHTTPRequest decodes an inference request body. headerLen holds the
// Inference-Header-Content-Length values: none for a JSON body, "0" for a
// raw binary request, else the length of the JSON part.
func decodeHTTPRequest(body []byte, headerLen []string, sig engine.Signature) (*httpRequest, error) {
	jsonPart, bin := body, []byte(nil)
	if len(headerLen) > 0 {
		n, err := strconv.ParseInt(strings.TrimSpace(headerLen[0]), 10, 64)
		if len(headerLen) > 1 || err != nil || n < 0 || n > int64(len(body)) {
			return nil, fmt.Errorf("%w: %s %q is not a length within the body's %d bytes",
				engine.ErrInvalidInput, HeaderInferenceHeaderContentLength, strings.Join(headerLen, ", "), len(body))
		}
		if n == 0 {
			return decodeRawBinary(body, sig)
		}
		jsonPart, bin = body[:n], body[n:]
	}
	var jr jsonInferRequest
	if err := json.Unmarshal(jsonPart, &jr); err != nil {
		return nil, fmt.Errorf("%w: malformed inference request JSON: %v", engine.ErrInvalidInput, err)
	}
	req := &httpRequest{id: jr.ID, inputs: make(map[string]tensor.Tensor, len(jr.Inputs))}
	for i, in := range jr.Inputs {
		t, rest, err := decodeHTTPInput(in, bin)
		if err != nil {
			if in.Name == "" {
				return nil, fmt.Errorf("%w: input %d: %w", engine.ErrInvalidInput, i, err)
			}
			return nil, fmt.Errorf("%w: input %q: %w", engine.ErrInvalidInput, in.Name, err)
		}
		if _, dup := req.inputs[in.Name]; dup {
			return nil, fmt.Errorf("%w: input %q is given twice", engine.ErrInvalidInput, in.Name)
		}
		req.inputs[in.Name], bin = t, rest
	}
	if len(bin) > 0 {
		return nil, fmt.Errorf("%w: the body's last %d bytes of binary data belong to no input (binary_data_size of the inputs is too small)",
			engine.ErrInvalidInput, len(bin))
	}
	binaryDefault, _, err := jsonBoolParameter(jr.Parameters, ParamBinaryDataOutput)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", engine.ErrInvalidInput, err)
	}
	if req.outputs, err = selectHTTPOutputs(jr.Outputs, sig, binaryDefault); err != nil {
		return nil, err
	}
	return req, nil
}

// decodeHTTPInput decodes one input, taking its data from the front of bin
// when it has a binary_data_size parameter; it returns the rest of bin.
func decodeHTTPInput(in jsonInput, bin []byte) (tensor.Tensor, []byte, error) {
	if in.Name == "" {
		return tensor.Tensor{}, nil, errors.New("no name")
	}
	d, err := DType(in.Datatype)
	if err != nil {
		return tensor.Tensor{}, nil, err
	}
	if in.Shape == nil {
		return tensor.Tensor{}, nil, errors.New("no shape")
	}
	shape := *in.Shape
	size, err := tensor.ByteSize(d, shape)
	if err != nil {
		return tensor.Tensor{}, nil, err
	}
	binarySize, isBinary, err := jsonInt64Parameter(in.Parameters, ParamBinaryDataSize)
	if err != nil {
		return tensor.Tensor{}, nil, err
	}
	hasData := len(in.Data) > 0 && !bytes.Equal(in.Data, []byte("null"))
	if !isBinary {
		if !hasData {
			return tensor.Tensor{}, nil, errors.New(`no data: give "data" or a binary_data_size parameter`)
		}
		data, err := parseJSONData(in.Data, d, int64(size/d.Size()))
		if err != nil {
			return tensor.Tensor{}, nil, fmt.Errorf("%s %s: %w", in.Datatype, formatShape(shape), err)
		}
		return tensor.Tensor{DType: d, Shape: shape, Data: data}, bin, nil
	}
	switch {
	case hasData:
		return tensor.Tensor{}, nil, errors.New(`has both "data" and a binary_data_size parameter`)
	case binarySize != int64(size):
		return tensor.Tensor{}, nil, fmt.Errorf("binary_data_size is %d, %s %s needs %d bytes", binarySize, in.Datatype, formatShape(shape), size)
	case binarySize > int64(len(bin)):
		return tensor.Tensor{}, nil, fmt.Errorf("binary_data_size is %d, but only %d bytes of binary data are left in the body", binarySize, len(bin))
	}
	return tensor.Tensor{DType: d, Shape: shape, Data: bin[:size:size]}, bin[size:], nil
}

// decodeRawBinary decodes a raw binary request: the whole body is the one
// input of a single-input model, with the model's dtype and shape. At most
// one dimension may be dynamic; its size follows from the body's length
// (for a batching model, one row is batch 1). Every output is returned in
// binary.
func decodeRawBinary(body []byte, sig engine.Signature) (*httpRequest, error) {
	if len(sig.Inputs) != 1 {
		return nil, fmt.Errorf("%w: a raw binary request (%s: 0) needs a model with exactly one input; this one has %d",
			engine.ErrInvalidInput, HeaderInferenceHeaderContentLength, len(sig.Inputs))
	}
	spec := sig.Inputs[0]
	shape := append([]int64{}, spec.Shape...)
	dynamic := -1
	rowBytes := int64(spec.DType.Size())
	for i, d := range shape {
		switch {
		case d != engine.DynamicDim:
			rowBytes *= d
		case dynamic >= 0:
			return nil, fmt.Errorf("%w: input %q of shape %s has more than one dynamic dimension, so a raw binary request cannot give its shape",
				engine.ErrInvalidInput, spec.Name, tensor.ShapeString(spec.Shape))
		default:
			dynamic = i
		}
	}
	if dynamic >= 0 {
		if rowBytes == 0 || int64(len(body))%rowBytes != 0 {
			return nil, fmt.Errorf("%w: input %q: a raw binary body of %d bytes is not a whole number of %s elements of shape %s",
				engine.ErrInvalidInput, spec.Name, len(body), spec.DType, tensor.ShapeString(spec.Shape))
		}
		shape[dynamic] = int64(len(body)) / rowBytes
	}
	t, err := tensor.New(spec.DType, shape, body)
	if err != nil {
		return nil, fmt.Errorf("%w: input %q: raw binary body: %w", engine.ErrInvalidInput, spec.Name, err)
	}
	req := &httpRequest{inputs: map[string]tensor.Tensor{spec.Name: t}}
	for _, o := range sig.Outputs {
		req.outputs = append(req.outputs, httpOutput{name: o.Name, binary: true})
	}
	return req, nil
}

// selectHTTPOutputs resolves the requested outputs (all of sig's when none
// is named) and whether each goes to the binary section.
func selectHTTPOutputs(requested []jsonRequestedOutput, sig engine.Signature, binaryDefault bool) ([]httpOutput, error) {
	var specs []engine.TensorSpec
	var binaries []bool
	if len(requested) == 0 {
		for _, o := range sig.Outputs {
			specs, binaries = append(specs, o), append(binaries, binaryDefault)
		}
	}
	var taken []string
	for _, o := range requested {
		spec, err := requestedOutput(sig, o.Name, taken)
		if err != nil {
			return nil, err
		}
		b, set, err := jsonBoolParameter(o.Parameters, ParamBinaryData)
		if err != nil {
			return nil, fmt.Errorf("%w: output %q: %w", engine.ErrInvalidInput, o.Name, err)
		}
		if !set {
			b = binaryDefault
		}
		taken = append(taken, spec.Name)
		specs, binaries = append(specs, spec), append(binaries, b)
	}
	outputs := make([]httpOutput, len(specs))
	for i, spec := range specs {
		// JSON has no 16-bit floats: they always travel in binary.
		binary := binaries[i] || spec.DType == tensor.Float16 || spec.DType == tensor.BFloat16
		outputs[i] = httpOutput{name: spec.Name, binary: binary}
	}
	return outputs, nil
}

// jsonBoolParameter reads an optional bool parameter.
func jsonBoolParameter(params map[string]json.RawMessage, key string) (value, set bool, err error) {
	raw, ok := params[key]
	if !ok {
		return false, false, nil
	}
	switch string(raw) {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, false, fmt.Errorf("parameter %q must be true or false, not %s", key, raw)
}

// jsonInt64Parameter reads an optional non-negative integer parameter.
func jsonInt64Parameter(params map[string]json.RawMessage, key string) (value int64, set bool, err error) {
	raw, ok := params[key]
	if !ok {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || v < 0 {
		return 0, false, fmt.Errorf("parameter %q must be a non-negative integer, not %s", key, raw)
	}
	return v, true, nil
}

// parseJSONData decodes a JSON array of n elements of dtype d, flat or
// nested to any depth (the nesting is not checked against the shape, as the
// protocol allows either), into little-endian bytes. A 0-d tensor may also
// be a bare value. raw is valid JSON. Every element takes at least one byte
// of raw, so n is checked against len(raw) before the buffer is allocated.
func parseJSONData(raw []byte, d tensor.DType, n int64) ([]byte, error) {
	if d == tensor.Float16 || d == tensor.BFloat16 {
		return nil, errors.New("16-bit floats cannot be sent as JSON; send the tensor as binary data (binary_data_size)")
	}
	if n > int64(len(raw)) {
		return nil, fmt.Errorf("needs %d elements, data holds at most %d", n, len(raw))
	}
	size := d.Size()
	out := make([]byte, int(n)*size)
	var count int64
	for i := 0; i < len(raw); {
		switch raw[i] {
		case '[', ']', ',', ' ', '\t', '\n', '\r':
			i++
			continue
		case '"', '{':
			return nil, fmt.Errorf("element %d is not a number or bool", count)
		}
		j := i
		for j < len(raw) && !isJSONDelim(raw[j]) {
			j++
		}
		if count == n {
			return nil, fmt.Errorf("needs %d elements, data holds more", n)
		}
		if err := putJSONElement(out[int(count)*size:], d, raw[i:j]); err != nil {
			return nil, fmt.Errorf("element %d: %w", count, err)
		}
		count++
		i = j
	}
	if count != n {
		return nil, fmt.Errorf("needs %d elements, data holds %d", n, count)
	}
	return out, nil
}

func isJSONDelim(c byte) bool {
	switch c {
	case '[', ']', ',', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// putJSONElement writes one JSON token as an element of dtype d.
func putJSONElement(dst []byte, d tensor.DType, tok []byte) error {
	s := string(tok)
	switch d {
	case tensor.Bool:
		switch s {
		case "true":
			dst[0] = 1
		case "false":
			dst[0] = 0
		default:
			return fmt.Errorf("%s is not true or false", s)
		}
	case tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64:
		v, err := strconv.ParseInt(s, 10, d.Size()*8)
		if err != nil {
			return numberError(s, d, err)
		}
		putUint(dst, d.Size(), uint64(v))
	case tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
		v, err := strconv.ParseUint(s, 10, d.Size()*8)
		if err != nil {
			return numberError(s, d, err)
		}
		putUint(dst, d.Size(), v)
	case tensor.Float32:
		v, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return numberError(s, d, err)
		}
		binary.LittleEndian.PutUint32(dst, math.Float32bits(float32(v)))
	case tensor.Float64:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return numberError(s, d, err)
		}
		binary.LittleEndian.PutUint64(dst, math.Float64bits(v))
	default:
		return fmt.Errorf("dtype %s cannot be read from JSON", d)
	}
	return nil
}

func numberError(s string, d tensor.DType, err error) error {
	dt, _ := Datatype(d)
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%s is out of range for %s", s, dt)
	}
	return fmt.Errorf("%s is not a valid %s value", s, dt)
}

// encodeHTTPResponse writes the JSON part of the response and returns the
// binary outputs' data, in order, to follow it.
func encodeHTTPResponse(m *Model, req *httpRequest, outputs map[string]tensor.Tensor) (header []byte, blobs [][]byte, err error) {
	b := make([]byte, 0, 256)
	b = append(b, `{"model_name":`...)
	b = appendJSONString(b, m.Name)
	b = append(b, `,"model_version":`...)
	b = appendJSONString(b, m.Version)
	if req.id != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, req.id)
	}
	b = append(b, `,"outputs":[`...)
	for i, o := range req.outputs {
		t, ok := outputs[o.name]
		if !ok {
			return nil, nil, fmt.Errorf("output %q is missing from the model's result", o.name)
		}
		if err := t.Validate(); err != nil {
			return nil, nil, fmt.Errorf("output %q: %w", o.name, err)
		}
		dt, err := Datatype(t.DType)
		if err != nil {
			return nil, nil, fmt.Errorf("output %q: %w", o.name, err)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, o.name)
		b = append(b, `,"datatype":"`...)
		b = append(b, dt...)
		b = append(b, `","shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, ']')
		if o.binary {
			b = append(b, `,"parameters":{"binary_data_size":`...)
			b = strconv.AppendInt(b, int64(len(t.Data)), 10)
			b = append(b, "}}"...)
			blobs = append(blobs, t.Data)
			continue
		}
		b = append(b, `,"data":`...)
		b = appendJSONData(b, t)
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	return b, blobs, nil
}

// appendJSONData writes a valid tensor as a flat JSON array. NaN and ±Inf
// become null.
func appendJSONData(b []byte, t tensor.Tensor) []byte {
	n := int(t.NumElements())
	size := t.DType.Size()
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		e := t.Data[i*size : (i+1)*size]
		switch t.DType {
		case tensor.Bool:
			b = strconv.AppendBool(b, e[0] != 0)
		case tensor.Int8:
			b = strconv.AppendInt(b, int64(int8(e[0])), 10)
		case tensor.Int16:
			b = strconv.AppendInt(b, int64(int16(binary.LittleEndian.Uint16(e))), 10)
		case tensor.Int32:
			b = strconv.AppendInt(b, int64(int32(binary.LittleEndian.Uint32(e))), 10)
		case tensor.Int64:
			b = strconv.AppendInt(b, int64(binary.LittleEndian.Uint64(e)), 10)
		case tensor.Uint8:
			b = strconv.AppendUint(b, uint64(e[0]), 10)
		case tensor.Uint16:
			b = strconv.AppendUint(b, uint64(binary.LittleEndian.Uint16(e)), 10)
		case tensor.Uint32:
			b = strconv.AppendUint(b, uint64(binary.LittleEndian.Uint32(e)), 10)
		case tensor.Uint64:
			b = strconv.AppendUint(b, binary.LittleEndian.Uint64(e), 10)
		case tensor.Float32:
			b = appendJSONFloat(b, float64(math.Float32frombits(binary.LittleEndian.Uint32(e))), 32)
		case tensor.Float64:
			b = appendJSONFloat(b, math.Float64frombits(binary.LittleEndian.Uint64(e)), 64)
		}
	}
	return append(b, ']')
}

// appendJSONFloat writes the shortest decimal that reads back as the same
// float of the given size.
func appendJSONFloat(b []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}
