package chains_test

import (
	"context"
	"encoding/binary"
	"math"
	"net/http"
	"testing"

	"github.com/modelserver/modelserver/chains"
	"github.com/modelserver/modelserver/internal/testbin"
	"github.com/modelserver/modelserver/tensor"
)

// Classify is a Go Chainlet whose dependency is an ONNX model Chainlet:
// modelserver serving its built-in mlp-classifier.
type ClassifyInput struct {
	Features tensor.Tensor `json:"features"`
}

type ClassifyOutput struct {
	Probabilities tensor.Tensor `json:"probabilities"`
	Label         tensor.Tensor `json:"label"`
}

type Classify struct {
	chains.Entrypoint
	JSON   chains.Dep[ClassifyInput, ClassifyOutput] `chains:"MLP"`
	Binary chains.Dep[ClassifyInput, ClassifyOutput] `chains:"MLP,binary"`
}

type ClassifyReport struct {
	JSON   ClassifyOutput `json:"json"`
	Binary ClassifyOutput `json:"binary"`
}

func (c *Classify) RunRemote(ctx context.Context, in ClassifyInput) (ClassifyReport, error) {
	j, err := c.JSON.RunRemote(ctx, in)
	if err != nil {
		return ClassifyReport{}, err
	}
	b, err := c.Binary.RunRemote(ctx, in)
	return ClassifyReport{JSON: j, Binary: b}, err
}

// TestModelChainletONNX calls a real modelserver (the ONNX mlp-classifier)
// as a model Chainlet from a Go Chainlet, in JSON (NumpyArrayField) and in
// binary (msgpack_numpy) mode, and checks both give the same answer.
func TestModelChainletONNX(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs modelserver")
	}
	url := testbin.Modelserver(t) + chains.PredictPath

	c2, err := chains.New(&Classify{}, chains.ModelChainlet{Name: "MLP", Model: "mlp-classifier"})
	if err != nil {
		t.Fatal(err)
	}
	run, err := chains.RunLocal[ClassifyInput, ClassifyReport](c2, chains.LocalOptions{Endpoints: map[string]chains.Endpoint{"MLP": {URL: url}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	feats := make([]float32, 2*16)
	for i := range feats {
		feats[i] = float32(i) / 10
	}
	in := float32s(feats...)
	in.Shape = []int64{2, 16}
	got, err := run.RunRemote(testContext(t), ClassifyInput{Features: in})
	if err != nil {
		t.Fatal(err)
	}
	for mode, out := range map[string]ClassifyOutput{"json": got.JSON, "binary": got.Binary} {
		p := out.Probabilities
		if p.DType != tensor.Float32 || len(p.Shape) != 2 || p.Shape[0] != 2 || p.Shape[1] != 4 || out.Label.DType != tensor.Int64 {
			t.Fatalf("%s: probabilities %v %v, label %v", mode, p.DType, p.Shape, out.Label.DType)
		}
		for row := range 2 {
			var sum float64
			for _, v := range floatsOf(p)[4*row : 4*row+4] {
				sum += float64(v)
			}
			if math.Abs(sum-1) > 1e-4 {
				t.Errorf("%s: row %d probabilities sum to %v", mode, row, sum)
			}
		}
	}
	if string(got.JSON.Probabilities.Data) != string(got.Binary.Probabilities.Data) ||
		binary.LittleEndian.Uint64(got.JSON.Label.Data) != binary.LittleEndian.Uint64(got.Binary.Label.Data) {
		t.Error("JSON and binary answers differ")
	}
}
