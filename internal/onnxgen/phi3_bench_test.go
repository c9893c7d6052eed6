package onnxgen

import (
	"fmt"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// BenchmarkPhi3 times the runtime on generated models: a 128-token prefill,
// and one decode step of a batch whose rows each hold 128 tokens, with the
// shared past/present buffer. The mid models take seconds to generate.
func BenchmarkPhi3(b *testing.B) {
	const context, maxLen = 128, 256
	midInt4 := Phi3Mid()
	midInt4.Precision = Phi3Int4
	tinyInt4 := Phi3Tiny()
	tinyInt4.Precision = Phi3Int4
	for _, m := range []struct {
		name string
		c    Phi3Config
	}{{"tiny-fp32", Phi3Tiny()}, {"tiny-int4", tinyInt4}, {"mid-fp32", Phi3Mid()}, {"mid-int4", midInt4}} {
		b.Run(m.name, func(b *testing.B) {
			requireORT(b)
			dir := b.TempDir()
			if err := WritePhi3Dir(dir, m.c); err != nil {
				b.Fatal(err)
			}
			session, err := ort.NewDynamicAdvancedSession(filepath.Join(dir, Phi3ModelFile), phi3Inputs(m.c), phi3Outputs(m.c), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer session.Destroy()
			run := func(b *testing.B, batch, seq, width int) {
				kv := make([]ort.Value, 0, 2*m.c.Layers)
				for range 2 * m.c.Layers {
					t, err := ort.NewTensor(ort.NewShape(int64(batch), int64(m.c.KVHeads), maxLen, int64(m.c.HeadDim)),
						make([]float32, batch*m.c.KVHeads*maxLen*m.c.HeadDim))
					if err != nil {
						b.Fatal(err)
					}
					defer t.Destroy()
					kv = append(kv, t)
				}
				ids, err := ort.NewTensor(ort.NewShape(int64(batch), int64(seq)), make([]int64, batch*seq))
				if err != nil {
					b.Fatal(err)
				}
				defer ids.Destroy()
				mask, err := ort.NewTensor(ort.NewShape(int64(batch), int64(width)), make([]int64, batch*width))
				if err != nil {
					b.Fatal(err)
				}
				defer mask.Destroy()
				for i := range mask.GetData() {
					mask.GetData()[i] = 1
				}
				for i := range ids.GetData() {
					ids.GetData()[i] = int64(100 + i)
				}
				logits, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(batch), int64(seq), int64(m.c.VocabSize)))
				if err != nil {
					b.Fatal(err)
				}
				defer logits.Destroy()
				in := append([]ort.Value{ids, mask}, kv...)
				out := append([]ort.Value{logits}, kv...)
				for b.Loop() {
					if err := session.Run(in, out); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.Run(fmt.Sprintf("prefill%d", context), func(b *testing.B) { run(b, 1, context, context) })
			for _, batch := range []int{1, 8} {
				b.Run(fmt.Sprintf("decode-batch%d-at%d", batch, context), func(b *testing.B) { run(b, batch, 1, context+1) })
			}
		})
	}
}
