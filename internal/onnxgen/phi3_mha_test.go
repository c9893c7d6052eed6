package onnxgen

import (
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// tinyMHA is the tiny model in the April 2024 CPU layout, with as many
// key/value heads as query heads, as MultiHeadAttention needs.
func tinyMHA(precision string, accuracy int) Phi3Config {
	c := tinyAt(precision, accuracy)
	c.KVHeads, c.Attention = c.Heads, Phi3MHA
	return c
}

// runMHA runs the MHA layout on batch rows of ids and position_ids with the
// given mask and pasts ([batch, KVHeads, P, HeadDim] each, flattened; nil
// for empty ones) and returns the logits and the presents the runtime
// allocates, [batch, KVHeads, P+S, HeadDim].
func (r *phi3Runner) runMHA(t *testing.T, batch int, ids, mask, positions []int64, pasts [][]float32) ([]float32, [][]float32) {
	t.Helper()
	s := int64(len(ids) / batch)
	in := []ort.Value{
		newTensor(t, []int64{int64(batch), s}, ids),
		newTensor(t, []int64{int64(batch), int64(len(mask) / batch)}, mask),
		newTensor(t, []int64{int64(batch), s}, positions),
	}
	for i := range 2 * r.c.Layers {
		var past []float32
		if pasts != nil {
			past = pasts[i]
		}
		p := int64(len(past) / (batch * r.c.KVHeads * r.c.HeadDim))
		in = append(in, newTensor(t, []int64{int64(batch), int64(r.c.KVHeads), p, int64(r.c.HeadDim)}, past))
	}
	out := make([]ort.Value, len(r.outputs))
	for _, v := range in {
		destroyLater(t, v)
	}
	if err := r.session.Run(in, out); err != nil {
		t.Fatalf("running the model: %v", err)
	}
	for _, v := range out {
		destroyLater(t, v)
	}
	presents := make([][]float32, len(out)-1)
	total := int64(len(mask) / batch)
	for i, v := range out[1:] {
		pv := v.(*ort.Tensor[float32])
		if want := ort.NewShape(int64(batch), int64(r.c.KVHeads), total, int64(r.c.HeadDim)); !pv.GetShape().Equals(want) {
			t.Fatalf("%s has shape %v, want %v", r.outputs[i+1], pv.GetShape(), want)
		}
		presents[i] = pv.GetData()
	}
	return out[0].(*ort.Tensor[float32]).GetData(), presents
}

func iota64(from, n int) []int64 {
	v := make([]int64, n)
	for i := range v {
		v[i] = int64(from + i)
	}
	return v
}

// TestPhi3MHAMatchesReference checks the MHA layout against the float64
// reference, and against the GQA layout of the same weights (the same math
// when KVHeads == Heads): a prefill, then onnxruntime-genai's loop without a
// shared buffer, where each run's presents are the next run's pasts, with a
// chunk of several tokens and then single tokens.
func TestPhi3MHAMatchesReference(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Phi3Config
	}{{"fp32", tinyMHA(Phi3FP32, 0)}, {"int4/accuracy1", tinyMHA(Phi3Int4, 1)}} {
		t.Run(tc.name, func(t *testing.T) {
			r := openPhi3(t, tc.c)
			gqaConfig := tc.c
			gqaConfig.Attention = Phi3GQA
			gqa := openPhi3(t, gqaConfig)
			want := r.ref.forward(phi3Prompt)
			v := r.c.VocabSize
			var pasts [][]float32
			for _, chunk := range [][2]int{{0, 5}, {5, 9}, {9, 10}, {10, 11}, {11, 18}} {
				from, to := chunk[0], chunk[1]
				logits, presents := r.runMHA(t, 1, phi3Prompt[from:to], ones(to), iota64(from, to-from), pasts)
				for p := from; p < to; p++ {
					off := (p - from) * v
					if d, at := maxAbsDiff(logits[off:off+v], want.logits[p]); d > 1e-4 {
						t.Errorf("chunk %v position %d: logit %d differs by %g", chunk, p, at, d)
					}
				}
				pasts = presents
			}
			// The final presents hold every position's K/V.
			for i, present := range pasts {
				ref := want.keys[i/2]
				if i%2 == 1 {
					ref = want.values[i/2]
				}
				var flat []float64
				for h := range r.c.KVHeads {
					for p := range phi3Prompt {
						flat = append(flat, ref[h][p]...)
					}
				}
				if d, at := maxAbsDiff(present, flat); d > 1e-4 {
					t.Errorf("%s element %d differs by %g", r.outputs[i+1], at, d)
				}
			}
			mhaLogits, _ := r.runMHA(t, 1, phi3Prompt, ones(len(phi3Prompt)), iota64(0, len(phi3Prompt)), nil)
			gqaLogits, _ := gqa.mustRun(t, 1, phi3Prompt, ones(len(phi3Prompt)), nil)
			var worst float64
			for i := range mhaLogits {
				worst = max(worst, float64(abs32(mhaLogits[i]-gqaLogits[i])))
			}
			if worst > 1e-4 {
				t.Errorf("MHA and GQA logits of the same weights differ by %g", worst)
			}
		})
	}
}

// TestPhi3MHARaggedDecode is continuous batching on the MHA layout: rows
// of different lengths L_b, each prefilled alone, decode together with
// their K/V gathered into pasts right-padded with zeros to P = max L_b,
// mask rows [1]*L_b + [0]*(P-L_b) + [1] and position_ids L_b. Each row's
// new K/V lands at index P of its present, and its logits match the
// reference of its own sequence.
func TestPhi3MHARaggedDecode(t *testing.T) {
	const steps = 4
	prefills := []int{3, 9, 1, 6}
	r := openPhi3(t, tinyMHA(Phi3FP32, 0))
	c := r.c
	seqs := make([][]int64, len(prefills))
	wants := make([]phi3Trace, len(prefills))
	// cache[b][i] holds row b's K (even i) or V (odd i) of layer i/2,
	// [KVHeads][L_b][HeadDim].
	cache := make([][][]float32, len(prefills))
	lens := append([]int(nil), prefills...)
	for b, l := range prefills {
		seqs[b] = phi3Prompt[b : b+l+steps]
		wants[b] = r.ref.forward(seqs[b])
		_, presents := r.runMHA(t, 1, seqs[b][:l], ones(l), iota64(0, l), nil)
		cache[b] = presents
	}
	v, hd := c.VocabSize, c.HeadDim
	for range steps {
		batch := len(lens)
		past := maxInt(lens)
		pasts := make([][]float32, 2*c.Layers)
		for i := range pasts {
			pasts[i] = make([]float32, batch*c.KVHeads*past*hd)
			for b, l := range lens {
				for h := range c.KVHeads {
					copy(pasts[i][((b*c.KVHeads+h)*past)*hd:], cache[b][i][h*l*hd:(h+1)*l*hd])
				}
			}
		}
		ids, mask, positions := make([]int64, batch), make([]int64, batch*(past+1)), make([]int64, batch)
		for b, l := range lens {
			ids[b], positions[b] = seqs[b][l], int64(l)
			for j := range l {
				mask[b*(past+1)+j] = 1
			}
			mask[b*(past+1)+past] = 1
		}
		logits, presents := r.runMHA(t, batch, ids, mask, positions, pasts)
		for b, l := range lens {
			if d, at := maxAbsDiff(logits[b*v:(b+1)*v], wants[b].logits[l]); d > 1e-4 {
				t.Errorf("row %d position %d: logit %d differs by %g", b, l, at, d)
			}
			// Append the new K/V (index past of the present) to the row.
			for i := range presents {
				grown := make([]float32, 0, c.KVHeads*(l+1)*hd)
				for h := range c.KVHeads {
					grown = append(grown, cache[b][i][h*l*hd:(h+1)*l*hd]...)
					at := ((b*c.KVHeads+h)*(past+1) + past) * hd
					grown = append(grown, presents[i][at:at+hd]...)
				}
				cache[b][i] = grown
			}
			lens[b]++
		}
	}
	// The cache assembled from the presents holds every row's K/V.
	for b, l := range lens {
		for layer := range c.Layers {
			for h := range c.KVHeads {
				for p := range l {
					if d, _ := maxAbsDiff(cache[b][2*layer][(h*l+p)*hd:(h*l+p+1)*hd], wants[b].keys[layer][h][p]); d > 1e-4 {
						t.Errorf("row %d layer %d head %d position %d: key differs by %g", b, layer, h, p, d)
					}
				}
			}
		}
	}
}
