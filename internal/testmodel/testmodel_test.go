package testmodel

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"testing"

	"github.com/modelserver/modelserver/tensor"
)

// TestMixedMatchesTheFixture checks the Go reference against ONNX Runtime
// running the fixture, so transport tests using either see the same model.
func TestMixedMatchesTheFixture(t *testing.T) {
	sig, b := ServeMixed(t)
	if len(sig.Inputs) != len(MixedSignature.Inputs) || len(sig.Outputs) != len(MixedSignature.Outputs) {
		t.Fatalf("fixture signature %+v, MixedSignature %+v", sig, MixedSignature)
	}
	var a, bb []byte
	for i, v := range []float32{1.5, -2, 0, 3, -1, 4, 2.25, -0.5} {
		a = binary.LittleEndian.AppendUint32(a, math.Float32bits(v))
		bb = binary.LittleEndian.AppendUint64(bb, uint64(int64(i*3-7)))
	}
	in := map[string]tensor.Tensor{
		"a":    {DType: tensor.Float32, Shape: []int64{2, 4}, Data: a},
		"b":    {DType: tensor.Int64, Shape: []int64{2, 4}, Data: bb},
		"flag": {DType: tensor.Bool, Shape: []int64{2, 1}, Data: []byte{1, 0}},
	}
	want, err := Mixed(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Predict(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		if g := got[name]; g.DType != w.DType || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: runtime % x, reference % x", name, g.Data, w.Data)
		}
	}
}
