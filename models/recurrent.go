package models

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/tensor"
)

// RecurrentStream serves a recurrent cell step by step: a request holds a
// sequence x float32 [batch, steps, in]; the cell runs once per step, carrying
// its hidden state, and every step is emitted as one chunk
// {"step": int64 0-d, "y": float32 [batch, out], "h": float32 [batch, hidden]}.
//
// The cell must take "x" [batch, in] and "h" [batch, hidden] and produce
// "h_next" [batch, hidden] and "y" [batch, out] (onnxgen.RecurrentCell).
type RecurrentStream struct {
	cell engine.Model
	sig  engine.Signature
	// in and hidden are the cell's feature sizes.
	in, hidden int64
}

var _ engine.StreamingModel = (*RecurrentStream)(nil)

// NewRecurrentStream wraps a loaded cell; it takes ownership of cell.
func NewRecurrentStream(cell engine.Model) (*RecurrentStream, error) {
	cs := cell.Signature()
	x, okX := cs.Input("x")
	h, okH := cs.Input("h")
	if !okX || !okH || len(x.Shape) != 2 || len(h.Shape) != 2 || x.Shape[1] < 1 || h.Shape[1] < 1 || x.DType != tensor.Float32 || h.DType != tensor.Float32 {
		return nil, fmt.Errorf("recurrent cell must take x float32 [batch, in] and h float32 [batch, hidden], has %+v", cs.Inputs)
	}
	var y engine.TensorSpec
	for _, o := range cs.Outputs {
		if o.Name == "y" {
			y = o
		}
	}
	if len(y.Shape) != 2 {
		return nil, fmt.Errorf("recurrent cell must produce y [batch, out], has %+v", cs.Outputs)
	}
	sig := engine.Signature{
		Inputs: []engine.TensorSpec{{Name: "x", DType: tensor.Float32,
			Shape: []int64{engine.DynamicDim, engine.DynamicDim, x.Shape[1]}, DimNames: []string{"batch", "steps", ""}}},
		Outputs: []engine.TensorSpec{
			{Name: "step", DType: tensor.Int64, Shape: []int64{}, DimNames: []string{}},
			{Name: "y", DType: tensor.Float32, Shape: []int64{engine.DynamicDim, y.Shape[1]}, DimNames: []string{"batch", ""}},
			{Name: "h", DType: tensor.Float32, Shape: []int64{engine.DynamicDim, h.Shape[1]}, DimNames: []string{"batch", ""}},
		},
	}
	return &RecurrentStream{cell: cell, sig: sig, in: x.Shape[1], hidden: h.Shape[1]}, nil
}

// Signature implements engine.StreamingModel.
func (r *RecurrentStream) Signature() engine.Signature { return r.sig }

// Close implements engine.StreamingModel.
func (r *RecurrentStream) Close() error { return r.cell.Close() }

// Stream implements engine.StreamingModel. It checks ctx before every step,
// so a cancelled request stops within one step.
func (r *RecurrentStream) Stream(ctx context.Context, inputs map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) error {
	x := inputs["x"]
	if err := r.sig.Check(inputs); err != nil {
		return err
	}
	batch, steps := x.Shape[0], x.Shape[1]
	rowBytes := r.in * 4
	h := tensor.Tensor{DType: tensor.Float32, Shape: []int64{batch, r.hidden}, Data: make([]byte, batch*r.hidden*4)}
	for step := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		xt := make([]byte, batch*rowBytes)
		for b := range batch {
			src := (b*steps + step) * rowBytes
			copy(xt[b*rowBytes:(b+1)*rowBytes], x.Data[src:src+rowBytes])
		}
		out, err := r.cell.Run(ctx, map[string]tensor.Tensor{
			"x": {DType: tensor.Float32, Shape: []int64{batch, r.in}, Data: xt},
			"h": h,
		})
		if err != nil {
			return err
		}
		h = out["h_next"]
		stepData := binary.LittleEndian.AppendUint64(nil, uint64(step))
		if err := emit(map[string]tensor.Tensor{
			"step": {DType: tensor.Int64, Shape: []int64{}, Data: stepData},
			"y":    out["y"],
			"h":    h,
		}); err != nil {
			return err
		}
	}
	return nil
}
