package onnxgen

import "math"

// phi3Reference is an independent float64 forward pass of a generated Phi-3
// model over one sequence, written from the Hugging Face Phi-3 definition
// rather than from the graph: RMS norms, packed QKV, rotary embeddings in
// the non-interleaved (rotate-half) form, causal grouped-query attention and
// the SiLU-gated MLP. In int4 it uses the dequantized weights. It is the
// reference of both attention layouts (Phi3GQA and Phi3MHA compute the same
// function of the same weights).
type phi3Reference struct {
	c Phi3Config
	w *phi3Weights
}

// phi3Trace is the result of phi3Reference.forward for a sequence of S
// tokens.
type phi3Trace struct {
	// logits is [S][VocabSize].
	logits [][]float64
	// keys and values are [layer][kv head][position][HeadDim], keys after
	// the rotary embedding, as both layouts' presents hold them.
	keys, values [][][][]float64
}

func (r phi3Reference) forward(tokens []int64) phi3Trace {
	c, w := r.c, r.w
	hd, half := c.HeadDim, c.HeadDim/2
	group := c.Heads / c.KVHeads
	tr := phi3Trace{}
	residual := make([][]float64, len(tokens))
	for t, id := range tokens {
		residual[t] = widen(w.embed[int(id)*c.Hidden : (int(id)+1)*c.Hidden])
	}
	for _, l := range w.layers {
		keys := make([][][]float64, c.KVHeads)
		values := make([][][]float64, c.KVHeads)
		queries := make([][][]float64, len(tokens)) // [position][head][HeadDim]
		for t := range tokens {
			qkv := matVec(rmsNorm(residual[t], l.inputNorm), l.qkv)
			queries[t] = make([][]float64, c.Heads)
			for h := range c.Heads {
				queries[t][h] = rotate(qkv[h*hd:(h+1)*hd], w, t, half)
			}
			for h := range c.KVHeads {
				k := qkv[c.Hidden+h*hd : c.Hidden+(h+1)*hd]
				v := qkv[c.Hidden+(c.KVHeads+h)*hd : c.Hidden+(c.KVHeads+h+1)*hd]
				keys[h] = append(keys[h], rotate(k, w, t, half))
				values[h] = append(values[h], append([]float64(nil), v...))
			}
		}
		tr.keys, tr.values = append(tr.keys, keys), append(tr.values, values)
		for t := range tokens {
			attn := make([]float64, c.Hidden)
			for h := range c.Heads {
				kv := h / group
				scores := make([]float64, t+1)
				top := math.Inf(-1)
				for s := range scores {
					scores[s] = dot(queries[t][h], keys[kv][s]) / math.Sqrt(float64(hd))
					top = math.Max(top, scores[s])
				}
				var sum float64
				for s := range scores {
					scores[s] = math.Exp(scores[s] - top)
					sum += scores[s]
				}
				for s, p := range scores {
					for d := range hd {
						attn[h*hd+d] += p / sum * values[kv][s][d]
					}
				}
			}
			addTo(residual[t], matVec(attn, l.o))
			x := rmsNorm(residual[t], l.postAttentionNorm)
			gate, up := matVec(x, l.gate), matVec(x, l.up)
			for i, g := range gate {
				gate[i] = g / (1 + math.Exp(-g)) * up[i]
			}
			addTo(residual[t], matVec(gate, l.down))
		}
	}
	for t := range tokens {
		tr.logits = append(tr.logits, matVec(rmsNorm(residual[t], w.finalNorm), w.lmHead))
	}
	return tr
}

// rotate applies the rotary embedding of position p to one head's vector,
// pairing element i with element i+half.
func rotate(x []float64, w *phi3Weights, p, half int) []float64 {
	out := make([]float64, len(x))
	for i := range half {
		cos, sin := float64(w.cos[p*half+i]), float64(w.sin[p*half+i])
		out[i] = x[i]*cos - x[i+half]*sin
		out[i+half] = x[i+half]*cos + x[i]*sin
	}
	return out
}

func rmsNorm(x []float64, gamma []float32) []float64 {
	var ms float64
	for _, v := range x {
		ms += v * v
	}
	inv := 1 / math.Sqrt(ms/float64(len(x))+phi3RMSEpsilon)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v * inv * float64(gamma[i])
	}
	return out
}

func matVec(x []float64, m *matrix) []float64 {
	out := make([]float64, m.cols)
	for k, xk := range x {
		row := m.values[k*m.cols : (k+1)*m.cols]
		for n, v := range row {
			out[n] += xk * float64(v)
		}
	}
	return out
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func addTo(dst, src []float64) {
	for i := range dst {
		dst[i] += src[i]
	}
}

func widen(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
