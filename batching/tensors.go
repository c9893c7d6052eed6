package batching

import (
	"encoding/binary"
	"fmt"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/tensor"
)

// batchable reports whether sig allows concatenating requests along
// dimension 0: every input and output has a dynamic first dimension.
func batchable(sig engine.Signature) bool {
	if len(sig.Inputs) == 0 || len(sig.Outputs) == 0 {
		return false
	}
	for _, specs := range [][]engine.TensorSpec{sig.Inputs, sig.Outputs} {
		for _, s := range specs {
			if len(s.Shape) == 0 || s.Shape[0] != engine.DynamicDim {
				return false
			}
		}
	}
	return true
}

// inspect validates r's inputs against the signature and, when batching is
// on, sets r.rows and r.key (the trailing shapes of all inputs) or marks r
// solo.
func (b *Batcher) inspect(r *request, batching bool) error {
	if err := b.sig.Check(r.inputs); err != nil {
		return err
	}
	if !batching {
		r.solo, r.rows = true, 1
		if len(b.sig.Inputs) > 0 {
			if shape := r.inputs[b.sig.Inputs[0].Name].Shape; len(shape) > 0 {
				r.rows = shape[0]
			}
		}
		return nil
	}
	first := b.sig.Inputs[0].Name
	r.rows = r.inputs[first].Shape[0]
	key := r.keyBuf[:0]
	for _, spec := range b.sig.Inputs {
		shape := r.inputs[spec.Name].Shape
		if shape[0] != r.rows {
			return fmt.Errorf("%w: inputs %q and %q disagree on the batch dimension: %d and %d rows",
				engine.ErrInvalidInput, first, spec.Name, r.rows, shape[0])
		}
		for _, d := range shape[1:] {
			key = binary.AppendUvarint(key, uint64(d))
		}
	}
	if r.rows > b.opts.maxBatchSize {
		return fmt.Errorf("%w: input %q has %d rows, more than the maximum batch size of %d",
			engine.ErrInvalidInput, first, r.rows, b.opts.maxBatchSize)
	}
	r.key = key
	r.solo = r.rows == 0
	return nil
}

// stage copies the inputs of reqs, in order, into buffers allocated once with
// the exact size: one request's inputs are copied as they are, several are
// concatenated along dimension 0.
func stage(specs []engine.TensorSpec, reqs []*request, rows int64) map[string]tensor.Tensor {
	staged := make(map[string]tensor.Tensor, len(specs))
	for _, spec := range specs {
		first := reqs[0].inputs[spec.Name]
		size := 0
		for _, r := range reqs {
			size += len(r.inputs[spec.Name].Data)
		}
		data := make([]byte, size)
		off := 0
		for _, r := range reqs {
			off += copy(data[off:], r.inputs[spec.Name].Data)
		}
		shape := append([]int64(nil), first.Shape...)
		if len(reqs) > 1 {
			shape[0] = rows
		}
		staged[spec.Name] = tensor.Tensor{DType: first.DType, Shape: shape, Data: data}
	}
	return staged
}

// rowsMismatch reports an output whose first dimension is not rows, which
// means the model does not keep rows apart.
func rowsMismatch(outputs map[string]tensor.Tensor, rows int64) error {
	for name, t := range outputs {
		if len(t.Shape) == 0 || t.Shape[0] != rows {
			return fmt.Errorf("output %q has shape %s for a batch of %d rows; the model does not keep rows apart, so it runs unbatched from now on",
				name, tensor.ShapeString(t.Shape), rows)
		}
	}
	return nil
}

// split cuts the outputs of an execution of reqs back into one output map per
// request, by row offsets. Each piece is a view with clipped capacity.
func split(outputs map[string]tensor.Tensor, reqs []*request) ([]map[string]tensor.Tensor, error) {
	for name, t := range outputs {
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("%w: output %q: %v", engine.ErrRuntime, name, err)
		}
	}
	parts := make([]map[string]tensor.Tensor, len(reqs))
	for i := range parts {
		parts[i] = make(map[string]tensor.Tensor, len(outputs))
	}
	for name, t := range outputs {
		rowBytes := 0
		if t.Shape[0] > 0 {
			rowBytes = len(t.Data) / int(t.Shape[0])
		}
		off := 0
		for i, r := range reqs {
			n := int(r.rows) * rowBytes
			shape := append([]int64(nil), t.Shape...)
			shape[0] = r.rows
			parts[i][name] = tensor.Tensor{DType: t.DType, Shape: shape, Data: t.Data[off : off+n : off+n]}
			off += n
		}
	}
	return parts, nil
}
