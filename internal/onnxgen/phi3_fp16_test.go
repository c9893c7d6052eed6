package onnxgen

import (
	"math"
	"testing"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
)

func TestFloat16Conversion(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{65504, 0x7bff},
		{65520, 0x7c00}, // halfway to 2^16: ties to even, which is infinity
		{65519, 0x7bff},
		{1e6, 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{1 + 1.0/2048, 0x3c00},             // tie between 1 and its successor: to even
		{1 + 3.0/2048, 0x3c02},             // tie: to even, upwards
		{1 + 1.0/2048 + 1.0/65536, 0x3c01}, // just above the tie
		{0x1p-24, 0x0001},                  // smallest subnormal
		{0x1p-25, 0x0000},                  // tie with 0: to even
		{0x1.8p-25, 0x0001},
		{0x1.8p-24, 0x0002}, // tie between 1 and 2 units: to even
		{0x1p-14, 0x0400},   // smallest normal
		{0x1.ffcp-15, 0x0400},
		{float32(math.NaN()), 0x7e00},
	} {
		if got := float32ToFloat16(tc.in); got != tc.want {
			t.Errorf("float32ToFloat16(%g) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
	// Every float16 value survives the round trip through float32, and the
	// conversion to float32 agrees with the value's definition.
	for h := range 1 << 16 {
		f := float16ToFloat32(uint16(h))
		exp, mant := h>>10&0x1f, float64(h&0x3ff)
		var want float64
		switch exp {
		case 0x1f:
			if mant != 0 {
				if !math.IsNaN(float64(f)) {
					t.Fatalf("%#04x: got %g, want NaN", h, f)
				}
				continue
			}
			want = math.Inf(1)
		case 0:
			want = mant * 0x1p-24
		default:
			want = (1 + mant/1024) * math.Ldexp(1, exp-15)
		}
		if h&0x8000 != 0 {
			want = -want
		}
		if float64(f) != want || math.Signbit(float64(f)) != (h&0x8000 != 0) {
			t.Fatalf("float16ToFloat32(%#04x) = %g, want %g", h, f, want)
		}
		if back := float32ToFloat16(f); back != uint16(h) {
			t.Fatalf("%#04x → %g → %#04x", h, f, back)
		}
	}
}

// fp16Tensor returns a float16 tensor over data, which must hold at least
// one element: the binding refuses empty buffers, so an empty tensor gets a
// one-element buffer it does not read.
func fp16Tensor(t *testing.T, shape []int64, data []uint16) *ort.CustomDataTensor {
	t.Helper()
	if len(data) == 0 {
		data = make([]uint16, 1)
	}
	v, err := ort.NewCustomDataTensor(ort.NewShape(shape...), unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 2*len(data)), ort.TensorElementDataTypeFloat16)
	if err != nil {
		t.Fatal(err)
	}
	destroyLater(t, v)
	return v
}

func widenFloat16(v []uint16) []float32 {
	out := make([]float32, len(v))
	for i, h := range v {
		out[i] = float16ToFloat32(h)
	}
	return out
}

// runFP16 runs an fp16 model on one row of ids. In the GQA layout pasts
// are the shared buffers, [1, KVHeads, maxLen, HeadDim] each, and also the
// presents; in the MHA layout they hold past positions and the presents
// are new buffers one run longer. The binding cannot wrap float16 outputs
// that the runtime allocates, so every output is allocated here, as a
// server does. It returns the logits, [len(ids), VocabSize], and the
// presents.
func (r *phi3Runner) runFP16(t *testing.T, ids []int64, past int, pasts [][]uint16) ([]float32, [][]uint16) {
	t.Helper()
	c := r.c
	s, total := int64(len(ids)), int64(past+len(ids))
	in := []ort.Value{newTensor(t, []int64{1, s}, ids), newTensor(t, []int64{1, total}, ones(int(total)))}
	if c.Attention == Phi3MHA {
		in = append(in, newTensor(t, []int64{1, s}, iota64(past, len(ids))))
	}
	logits := make([]uint16, len(ids)*c.VocabSize)
	out := []ort.Value{fp16Tensor(t, []int64{1, s, int64(c.VocabSize)}, logits)}
	presents := make([][]uint16, len(pasts))
	for i := range 2 * c.Layers {
		if c.Attention == Phi3MHA {
			pastView := fp16Tensor(t, []int64{1, int64(c.KVHeads), int64(past), int64(c.HeadDim)}, pasts[i])
			presents[i] = make([]uint16, c.KVHeads*int(total)*c.HeadDim)
			in = append(in, pastView)
			out = append(out, fp16Tensor(t, []int64{1, int64(c.KVHeads), total, int64(c.HeadDim)}, presents[i]))
			continue
		}
		maxLen := int64(len(pasts[i]) / (c.KVHeads * c.HeadDim))
		shared := fp16Tensor(t, []int64{1, int64(c.KVHeads), maxLen, int64(c.HeadDim)}, pasts[i])
		presents[i] = pasts[i]
		in, out = append(in, shared), append(out, shared)
	}
	for _, v := range in[:len(in)-2*c.Layers] {
		destroyLater(t, v)
	}
	if err := r.session.Run(in, out); err != nil {
		t.Fatalf("running the model: %v", err)
	}
	return widenFloat16(logits), presents
}

// phi3FP16Tolerance bounds |logit − reference| for the fp16 tiny model. The
// reference computes in float64 with the model's float16 weights, so the
// difference is float16 rounding of activations only: each rounding is
// relative error up to 2⁻¹¹ ≈ 4.9e-4. The logits' standard deviation is
// about 2 with extremes near 8, each logit comes out of float16 MatMuls and
// norms over two layers (about 15 rounded intermediates on its path), and
// the final rounding of an output near 8 alone is up to 2⁻⁸ ≈ 0.004; 15
// relative errors of 4.9e-4 on values of magnitude 8 reach 0.06. The
// tolerance is that worst case; errors of the float32 models (1e-4) would
// not reveal a broken float16 path, but a wrong weight, position or cache
// entry moves logits by about their standard deviation, 2.
const phi3FP16Tolerance = 0.06

// phi3FP16KVTolerance bounds the cached keys and values, which come out of
// one norm and one MatMul (and the rotary embedding for keys) from the
// embeddings or the first layer's output: values of magnitude up to about 4
// with a few roundings of 2⁻¹¹ relative each.
const phi3FP16KVTolerance = 0.02

// TestPhi3FP16MatchesReference runs the fp16 model in both layouts through
// a prefill and single-token decode steps (the shared buffer in GQA, fresh
// presents in MHA) and checks logits and cached keys and values against the
// float64 reference.
func TestPhi3FP16MatchesReference(t *testing.T) {
	const prefill, maxLen = 5, 24
	for _, tc := range []struct {
		name string
		c    Phi3Config
	}{{"gqa", tinyAt(Phi3FP16, 0)}, {"mha", tinyMHA(Phi3FP16, 0)}} {
		t.Run(tc.name, func(t *testing.T) {
			r := openPhi3(t, tc.c)
			c := r.c
			want := r.ref.forward(phi3Prompt)
			kv := make([][]uint16, 2*c.Layers)
			for i := range kv {
				if c.Attention != Phi3MHA {
					kv[i] = make([]uint16, c.KVHeads*maxLen*c.HeadDim)
				}
			}
			v := c.VocabSize
			logits, kv := r.runFP16(t, phi3Prompt[:prefill], 0, kv)
			var worst float64
			check := func(p int, logits []float32) {
				t.Helper()
				d, at := maxAbsDiff(logits, want.logits[p])
				worst = max(worst, d)
				if d > phi3FP16Tolerance {
					t.Errorf("position %d: logit %d differs by %g (got %g, want %g)", p, at, d, logits[at], want.logits[p][at])
				}
				if got, ref := argmax32(logits), argmax64(want.logits[p]); got != ref {
					t.Logf("position %d: argmax %d, reference %d (margin %g)", p, got, ref, want.logits[p][ref]-want.logits[p][got])
				}
			}
			for p := range prefill {
				check(p, logits[p*v:(p+1)*v])
			}
			for p := prefill; p < len(phi3Prompt); p++ {
				logits, kv = r.runFP16(t, phi3Prompt[p:p+1], p, kv)
				check(p, logits)
			}
			t.Logf("largest logit difference %g", worst)
			rows := maxLen
			if c.Attention == Phi3MHA {
				rows = len(phi3Prompt)
			}
			var worstKV float64
			for i, buf := range kv {
				layer, isValue := i/2, i%2 == 1
				for h := range c.KVHeads {
					for p := range rows {
						ref := make([]float64, c.HeadDim)
						if p < len(phi3Prompt) && isValue {
							ref = want.values[layer][h][p]
						} else if p < len(phi3Prompt) {
							ref = want.keys[layer][h][p]
						}
						off := (h*rows + p) * c.HeadDim
						d, _ := maxAbsDiff(widenFloat16(buf[off:off+c.HeadDim]), ref)
						worstKV = max(worstKV, d)
						if d > phi3FP16KVTolerance {
							t.Errorf("layer %d head %d position %d (value %v): cached vector differs by %g", layer, h, p, isValue, d)
						}
					}
				}
			}
			t.Logf("largest key/value difference %g", worstKV)
		})
	}
}
