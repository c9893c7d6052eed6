package models

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/onnxgen"
	"github.com/modelserver/modelserver/internal/testort"
	"github.com/modelserver/modelserver/tensor"
)

func loadCell(t *testing.T) engine.Model {
	t.Helper()
	if err := engine.InitONNXRuntime(testort.Library(t)); err != nil {
		t.Fatal(err)
	}
	data, err := onnxgen.RecurrentCell(onnxgen.RecurrentOptions{Seed: 7, In: 3, Hidden: 5, Output: 2})
	if err != nil {
		t.Fatal(err)
	}
	m, err := engine.LoadONNXBytes(data, engine.ONNXOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// countingModel counts the cell's runs.
type countingModel struct {
	engine.Model
	runs int
}

func (c *countingModel) Run(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	c.runs++
	return c.Model.Run(ctx, in)
}

func floats(vs ...float32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func TestRecurrentStreamMatchesStepByStep(t *testing.T) {
	cell := loadCell(t)
	rs, err := NewRecurrentStream(cell)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	// x is [batch 2, steps 3, in 3].
	seq := []float32{1, 0, -1, 0.5, 0.5, 0.5, 2, -2, 0, -1, 1, 0, 0, 0, 3, 0.25, -0.5, 1}
	x := tensor.Tensor{DType: tensor.Float32, Shape: []int64{2, 3, 3}, Data: floats(seq...)}
	var chunks []map[string]tensor.Tensor
	err = rs.Stream(context.Background(), map[string]tensor.Tensor{"x": x}, func(c map[string]tensor.Tensor) error {
		chunks = append(chunks, c)
		return nil
	})
	if err != nil || len(chunks) != 3 {
		t.Fatalf("Stream = %v with %d chunks, want 3", err, len(chunks))
	}
	// The same steps run by hand, carrying h.
	h := tensor.Tensor{DType: tensor.Float32, Shape: []int64{2, 5}, Data: make([]byte, 40)}
	for step := range 3 {
		xt := append(floats(seq[3*step:3*step+3]...), floats(seq[9+3*step:9+3*step+3]...)...)
		out, err := cell.Run(context.Background(), map[string]tensor.Tensor{"x": {DType: tensor.Float32, Shape: []int64{2, 3}, Data: xt}, "h": h})
		if err != nil {
			t.Fatal(err)
		}
		h = out["h_next"]
		got := chunks[step]
		if !bytes.Equal(got["y"].Data, out["y"].Data) || !bytes.Equal(got["h"].Data, h.Data) || binary.LittleEndian.Uint64(got["step"].Data) != uint64(step) {
			t.Errorf("step %d: stream chunk differs from the step run by hand", step)
		}
	}
}

func TestRecurrentStreamStopsWithinOneStep(t *testing.T) {
	cell := &countingModel{Model: loadCell(t)}
	rs, err := NewRecurrentStream(cell)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	x := tensor.Tensor{DType: tensor.Float32, Shape: []int64{1, 100, 3}, Data: make([]byte, 1200)}
	ctx, cancel := context.WithCancel(context.Background())
	emitted := 0
	err = rs.Stream(ctx, map[string]tensor.Tensor{"x": x}, func(map[string]tensor.Tensor) error {
		emitted++
		if emitted == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || cell.runs != 2 {
		t.Errorf("cancelled after 2 chunks: Stream = %v after %d cell runs, want context.Canceled after 2", err, cell.runs)
	}
	stop := errors.New("consumer gone")
	cell.runs = 0
	err = rs.Stream(context.Background(), map[string]tensor.Tensor{"x": x}, func(map[string]tensor.Tensor) error { return stop })
	if !errors.Is(err, stop) || cell.runs != 1 {
		t.Errorf("emit failing: Stream = %v after %d runs, want the emit error after 1", err, cell.runs)
	}
}

func TestRecurrentStreamRejectsBadInput(t *testing.T) {
	rs, err := NewRecurrentStream(loadCell(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	x := tensor.Tensor{DType: tensor.Float32, Shape: []int64{1, 2, 4}, Data: make([]byte, 32)}
	err = rs.Stream(context.Background(), map[string]tensor.Tensor{"x": x}, func(map[string]tensor.Tensor) error { return nil })
	if !errors.Is(err, engine.ErrInvalidInput) {
		t.Errorf("wrong feature size: %v, want ErrInvalidInput", err)
	}
	if _, err := NewRecurrentStream(&countingModel{Model: mustMixed(t)}); err == nil {
		t.Error("NewRecurrentStream accepted a model that is not a recurrent cell")
	}
}

func mustMixed(t *testing.T) engine.Model {
	data, err := onnxgen.MixedFixture()
	if err != nil {
		t.Fatal(err)
	}
	m, err := engine.LoadONNXBytes(data, engine.ONNXOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}
