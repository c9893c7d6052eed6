package onnxgen

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// phi3Runner runs a generated Phi-3 model from its directory, as a server
// would: loaded from the file path, so the runtime finds the external data.
type phi3Runner struct {
	c       Phi3Config
	w       *phi3Weights
	ref     phi3Reference
	session *ort.DynamicAdvancedSession
	inputs  []string
	outputs []string
}

func phi3Inputs(c Phi3Config) []string {
	names := []string{"input_ids", "attention_mask"}
	if c.Attention == Phi3MHA {
		names = append(names, "position_ids")
	}
	for i := range c.Layers {
		names = append(names, fmt.Sprintf("past_key_values.%d.key", i), fmt.Sprintf("past_key_values.%d.value", i))
	}
	return names
}

func phi3Outputs(c Phi3Config) []string {
	names := []string{"logits"}
	for i := range c.Layers {
		names = append(names, fmt.Sprintf("present.%d.key", i), fmt.Sprintf("present.%d.value", i))
	}
	return names
}

// phi3Models caches one generated directory and its weights per
// configuration for the whole test binary; TestMain removes root.
var phi3Models struct {
	sync.Mutex
	root   string
	models map[Phi3Config]phi3Model
}

type phi3Model struct {
	dir string
	w   *phi3Weights
}

// generatedPhi3 returns the directory and weights of c, generating them
// once.
func generatedPhi3(t testing.TB, c Phi3Config) phi3Model {
	t.Helper()
	phi3Models.Lock()
	defer phi3Models.Unlock()
	if phi3Models.root == "" {
		root, err := os.MkdirTemp("", "onnxgen-phi3")
		if err != nil {
			t.Fatal(err)
		}
		phi3Models.root, phi3Models.models = root, make(map[Phi3Config]phi3Model)
	}
	m, ok := phi3Models.models[c]
	if !ok {
		m.dir = filepath.Join(phi3Models.root, fmt.Sprint(len(phi3Models.models)))
		if err := WritePhi3Dir(m.dir, c); err != nil {
			t.Fatal(err)
		}
		m.w = newPhi3Weights(c)
		phi3Models.models[c] = m
	}
	return m
}

func TestMain(m *testing.M) {
	code := m.Run()
	if phi3Models.root != "" {
		os.RemoveAll(phi3Models.root)
	}
	os.Exit(code)
}

func openPhi3(t *testing.T, c Phi3Config) *phi3Runner {
	t.Helper()
	requireORT(t)
	m := generatedPhi3(t, c)
	r := &phi3Runner{c: c, w: m.w, ref: phi3Reference{c, m.w}, inputs: phi3Inputs(c), outputs: phi3Outputs(c)}
	var err error
	r.session, err = ort.NewDynamicAdvancedSession(filepath.Join(m.dir, Phi3ModelFile), r.inputs, r.outputs, nil)
	if err != nil {
		t.Fatalf("loading the model: %v", err)
	}
	t.Cleanup(func() { r.session.Destroy() })
	return r
}

// kvCache is the shared past/present buffer of a batch of slots: one Go
// slice per layer and per key/value, [slots, KVHeads, maxLen, HeadDim],
// index 2·layer for keys and 2·layer+1 for values.
type kvCache struct {
	slots, maxLen int
	data          [][]float32
}

func newKVCache(c Phi3Config, slots, maxLen int) *kvCache {
	kv := &kvCache{slots: slots, maxLen: maxLen}
	for range 2 * c.Layers {
		kv.data = append(kv.data, make([]float32, slots*c.KVHeads*maxLen*c.HeadDim))
	}
	return kv
}

// view returns tensors over slots [from, from+n) of every buffer, sharing
// their memory.
func (r *phi3Runner) view(t *testing.T, kv *kvCache, from, n int) []ort.Value {
	t.Helper()
	slot := r.c.KVHeads * kv.maxLen * r.c.HeadDim
	var views []ort.Value
	for _, d := range kv.data {
		views = append(views, newTensor(t, []int64{int64(n), int64(r.c.KVHeads), int64(kv.maxLen), int64(r.c.HeadDim)}, d[from*slot:(from+n)*slot]))
	}
	return views
}

// at returns the cached vector of layer, key (or value), slot, kv head and
// position.
func (r *phi3Runner) at(kv *kvCache, layer int, value bool, slot, head, pos int) []float32 {
	d := kv.data[2*layer]
	if value {
		d = kv.data[2*layer+1]
	}
	off := ((slot*r.c.KVHeads+head)*kv.maxLen + pos) * r.c.HeadDim
	return d[off : off+r.c.HeadDim]
}

// run runs batch rows of ids (each of len(ids)/batch tokens) with mask
// (batch rows of equal width). With kv set, the same tensors are the pasts
// and the presents (the shared buffer); without, the pasts are empty and
// the runtime allocates the presents. It returns the logits, [batch, S,
// VocabSize] flattened, and the presents.
func (r *phi3Runner) run(t *testing.T, batch int, ids, mask []int64, kv []ort.Value) ([]float32, []ort.Value, error) {
	t.Helper()
	in := []ort.Value{
		newTensor(t, []int64{int64(batch), int64(len(ids) / batch)}, ids),
		newTensor(t, []int64{int64(batch), int64(len(mask) / batch)}, mask),
	}
	out := make([]ort.Value, len(r.outputs))
	if kv != nil {
		in = append(in, kv...)
		copy(out[1:], kv)
	} else {
		for range 2 * r.c.Layers {
			in = append(in, newTensor(t, []int64{int64(batch), int64(r.c.KVHeads), 0, int64(r.c.HeadDim)}, []float32{}))
		}
	}
	for _, v := range in {
		destroyLater(t, v)
	}
	if err := r.session.Run(in, out); err != nil {
		return nil, nil, err
	}
	for i, v := range out {
		if i == 0 || kv == nil {
			destroyLater(t, v)
		}
	}
	logits, ok := out[0].(*ort.Tensor[float32])
	if !ok {
		t.Fatalf("logits are a %T", out[0])
	}
	if want := ort.NewShape(int64(batch), int64(len(ids)/batch), int64(r.c.VocabSize)); !logits.GetShape().Equals(want) {
		t.Fatalf("logits have shape %v, want %v", logits.GetShape(), want)
	}
	return logits.GetData(), out[1:], nil
}

func (r *phi3Runner) mustRun(t *testing.T, batch int, ids, mask []int64, kv []ort.Value) ([]float32, []ort.Value) {
	t.Helper()
	logits, presents, err := r.run(t, batch, ids, mask, kv)
	if err != nil {
		t.Fatalf("running the model: %v", err)
	}
	return logits, presents
}

// maxAbsDiff returns the largest |got-want| and its index.
func maxAbsDiff(got []float32, want []float64) (float64, int) {
	worst, at := 0.0, -1
	if len(got) != len(want) {
		return math.Inf(1), -1
	}
	for i, w := range want {
		if d := math.Abs(float64(got[i]) - w); d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	return worst, at
}

func argmax32(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func argmax64(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// phi3Prompt is a fixed token sequence: bos, then ordinary pieces and the
// chat markers.
var phi3Prompt = []int64{1, 32010, 29871, 13, 15043, 29892, 920, 526, 366, 29973, 32007, 32001, 18585, 29991, 306, 626, 2691, 29889}

func tinyAt(precision string, accuracy int) Phi3Config {
	c := Phi3Tiny()
	c.Precision, c.AccuracyLevel, c.Seed = precision, accuracy, 7
	return c
}

func ones(n int) []int64 {
	v := make([]int64, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// phi3Precisions are the tiny models checked exactly, each with the largest
// logit difference allowed between the runtime and the float64 reference. Float32 with float32 compute
// (fp32, and int4 at accuracy level 1, whose reference uses the very
// dequantized weights) differs only by float32 rounding: about 1e-6 of the
// logits' scale per operation. Accuracy level 4 also quantizes each block of
// 32 activations to int8 (rounding error up to max|x|/254 per element),
// which is a model error rather than a rounding one; see
// TestPhi3Int4AccuracyLevel4.
var phi3Precisions = []struct {
	name      string
	config    Phi3Config
	tolerance float64
}{
	{"fp32", tinyAt(Phi3FP32, 4), 1e-4},
	{"int4/accuracy1", tinyAt(Phi3Int4, 1), 1e-4},
}

func TestPhi3PrefillMatchesReference(t *testing.T) {
	for _, tc := range phi3Precisions {
		t.Run(tc.name, func(t *testing.T) {
			r := openPhi3(t, tc.config)
			prompt := phi3Prompt[:10]
			logits, presents := r.mustRun(t, 1, prompt, ones(len(prompt)), nil)
			want := r.ref.forward(prompt)
			v := r.c.VocabSize
			for p := range prompt {
				if d, at := maxAbsDiff(logits[p*v:(p+1)*v], want.logits[p]); d > tc.tolerance {
					t.Errorf("position %d: logit %d differs by %g (got %g, want %g)", p, at, d, logits[p*v+at], want.logits[p][at])
				}
			}
			// Presents are [1, KVHeads, S, HeadDim]: keys after the rotary
			// embedding, values as projected.
			for i, pv := range presents {
				layer, isValue := i/2, i%2 == 1
				ref := want.keys[layer]
				if isValue {
					ref = want.values[layer]
				}
				got := pv.(*ort.Tensor[float32])
				if shape := ort.NewShape(1, int64(r.c.KVHeads), int64(len(prompt)), int64(r.c.HeadDim)); !got.GetShape().Equals(shape) {
					t.Fatalf("%s has shape %v, want %v", r.outputs[i+1], got.GetShape(), shape)
				}
				var flat []float64
				for h := range r.c.KVHeads {
					for p := range prompt {
						flat = append(flat, ref[h][p]...)
					}
				}
				if d, at := maxAbsDiff(got.GetData(), flat); d > tc.tolerance {
					t.Errorf("%s element %d differs by %g", r.outputs[i+1], at, d)
				}
			}
		})
	}
}

// TestPhi3SharedBufferDecode runs the decode loop of onnxruntime-genai with
// past_present_share_buffer: one buffer per layer and K/V, [1, KVHeads,
// maxLen, HeadDim], passed as both past and present, a prefill and then one
// token per run with a mask of ones as wide as the tokens so far.
func TestPhi3SharedBufferDecode(t *testing.T) {
	const prefill, maxLen = 5, 24
	for _, tc := range phi3Precisions {
		t.Run(tc.name, func(t *testing.T) {
			r := openPhi3(t, tc.config)
			want := r.ref.forward(phi3Prompt)
			kv := newKVCache(r.c, 1, maxLen)
			views := r.view(t, kv, 0, 1)
			v := r.c.VocabSize
			logits, _ := r.mustRun(t, 1, phi3Prompt[:prefill], ones(prefill), views)
			for p := range prefill {
				if d, at := maxAbsDiff(logits[p*v:(p+1)*v], want.logits[p]); d > tc.tolerance {
					t.Errorf("prefill position %d: logit %d differs by %g", p, at, d)
				}
			}
			for p := prefill; p < len(phi3Prompt); p++ {
				logits, _ := r.mustRun(t, 1, phi3Prompt[p:p+1], ones(p+1), views)
				if d, at := maxAbsDiff(logits, want.logits[p]); d > tc.tolerance {
					t.Errorf("step at position %d: logit %d differs by %g", p, at, d)
				}
			}
			// The buffer holds every position's K/V in place, and zeros after.
			for layer := range r.c.Layers {
				for h := range r.c.KVHeads {
					for p := range maxLen {
						for _, value := range []bool{false, true} {
							ref := make([]float64, r.c.HeadDim)
							if p < len(phi3Prompt) && value {
								ref = want.values[layer][h][p]
							} else if p < len(phi3Prompt) {
								ref = want.keys[layer][h][p]
							}
							if d, _ := maxAbsDiff(r.at(kv, layer, value, 0, h, p), ref); d > tc.tolerance {
								t.Errorf("layer %d head %d position %d (value %v): cached vector differs by %g", layer, h, p, value, d)
							}
						}
					}
				}
			}
		})
	}
}

// TestPhi3GreedyDecode decodes greedily with the shared buffer and checks the
// tokens against the reference's, and that they vary.
func TestPhi3GreedyDecode(t *testing.T) {
	const steps, maxLen = 12, 32
	r := openPhi3(t, tinyAt(Phi3FP32, 0))
	prompt := phi3Prompt[:6]
	kv := newKVCache(r.c, 1, maxLen)
	views := r.view(t, kv, 0, 1)
	seq := append([]int64(nil), prompt...)
	logits, _ := r.mustRun(t, 1, prompt, ones(len(prompt)), views)
	last := logits[(len(prompt)-1)*r.c.VocabSize:]
	distinct := map[int64]bool{}
	for range steps {
		next := int64(argmax32(last))
		seq = append(seq, next)
		distinct[next] = true
		last, _ = r.mustRun(t, 1, []int64{next}, ones(len(seq)), views)
	}
	// The reference is causal, so one pass over the whole sequence gives
	// the logits each step saw.
	want := r.ref.forward(seq[:len(seq)-1])
	for p := len(prompt) - 1; p < len(seq)-1; p++ {
		if ref := int64(argmax64(want.logits[p])); seq[p+1] != ref {
			t.Fatalf("after %v: runtime picks %d, reference %d", seq[:p+1], seq[p+1], ref)
		}
	}
	if len(distinct) < steps/2 {
		t.Errorf("greedy decoding repeats itself: %v", seq[len(prompt):])
	}
}

// phi3Mask returns batch mask rows of width w with sums[b] ones each, at the
// start of the row (right padding) or, with atEnd, at its end.
func phi3Mask(sums []int, w int, atEnd bool) []int64 {
	mask := make([]int64, len(sums)*w)
	for b, s := range sums {
		for i := range s {
			if atEnd {
				mask[b*w+w-1-i] = 1
			} else {
				mask[b*w+i] = 1
			}
		}
	}
	return mask
}

// TestPhi3BatchedRaggedDecode is the continuous-batching pattern: each
// request's prefill runs alone (batch 1) on its own slot of a shared
// [slots, KVHeads, maxLen, HeadDim] buffer, then all slots decode together
// with one token each. Row b, holding L_b tokens, gets a mask that sums to
// L_b+1; the runtime writes its new K/V at position L_b and attends to
// positions 0..L_b, whatever the mask's width and wherever its ones sit.
func TestPhi3BatchedRaggedDecode(t *testing.T) {
	const maxLen, steps = 24, 4
	prefills := []int{3, 9, 0, 6} // a row of 0 starts with its first token in the decode run
	cases := []struct {
		name  string
		width func(lens []int) int
		atEnd bool
	}{
		{"width max(L+1), ones first", func(lens []int) int { return maxInt(lens) + 1 }, false},
		{"width max(L+1), ones last", func(lens []int) int { return maxInt(lens) + 1 }, true},
		{"width maxLen", func([]int) int { return maxLen }, false},
	}
	r := openPhi3(t, tinyAt(Phi3FP32, 0))
	seqs := make([][]int64, len(prefills))
	wants := make([]phi3Trace, len(prefills))
	for b := range prefills {
		seqs[b] = phi3Prompt[b : b+prefills[b]+steps]
		wants[b] = r.ref.forward(seqs[b])
	}
	v := r.c.VocabSize
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kv := newKVCache(r.c, len(prefills), maxLen)
			for b, l := range prefills {
				if l > 0 {
					r.mustRun(t, 1, seqs[b][:l], ones(l), r.view(t, kv, b, 1))
				}
			}
			all := r.view(t, kv, 0, len(prefills))
			lens := append([]int(nil), prefills...)
			for range steps {
				ids, sums := make([]int64, len(lens)), make([]int, len(lens))
				for b, l := range lens {
					ids[b], sums[b] = seqs[b][l], l+1
				}
				logits, _ := r.mustRun(t, len(lens), ids, phi3Mask(sums, tc.width(lens), tc.atEnd), all)
				for b, l := range lens {
					if d, at := maxAbsDiff(logits[b*v:(b+1)*v], wants[b].logits[l]); d > 1e-4 {
						t.Errorf("row %d position %d: logit %d differs by %g", b, l, at, d)
					}
					lens[b]++
				}
			}
		})
	}
}

// TestPhi3BatchedPaddedPrefill runs a batch of right-padded prompts in one
// run (onnxruntime-genai's static batching): every row's logits at its valid
// positions match, and decoding continues from the padded rows.
func TestPhi3BatchedPaddedPrefill(t *testing.T) {
	const maxLen, steps = 24, 3
	lens := []int{7, 3, 5}
	r := openPhi3(t, tinyAt(Phi3FP32, 0))
	width := maxInt(lens)
	ids := make([]int64, len(lens)*width)
	seqs := make([][]int64, len(lens))
	wants := make([]phi3Trace, len(lens))
	for b, l := range lens {
		seqs[b] = phi3Prompt[2*b : 2*b+l+steps]
		wants[b] = r.ref.forward(seqs[b])
		for i := range width {
			ids[b*width+i] = phi3EndOfText
			if i < l {
				ids[b*width+i] = seqs[b][i]
			}
		}
	}
	kv := newKVCache(r.c, len(lens), maxLen)
	all := r.view(t, kv, 0, len(lens))
	v := r.c.VocabSize
	logits, _ := r.mustRun(t, len(lens), ids, phi3Mask(lens, width, false), all)
	for b, l := range lens {
		for p := range l {
			off := (b*width + p) * v
			if d, at := maxAbsDiff(logits[off:off+v], wants[b].logits[p]); d > 1e-4 {
				t.Errorf("prefill row %d position %d: logit %d differs by %g", b, p, at, d)
			}
		}
	}
	for range steps {
		next, sums := make([]int64, len(lens)), make([]int, len(lens))
		for b, l := range lens {
			next[b], sums[b] = seqs[b][l], l+1
		}
		logits, _ := r.mustRun(t, len(lens), next, phi3Mask(sums, maxInt(lens)+1, false), all)
		for b, l := range lens {
			if d, at := maxAbsDiff(logits[b*v:(b+1)*v], wants[b].logits[l]); d > 1e-4 {
				t.Errorf("decode row %d position %d: logit %d differs by %g", b, l, at, d)
			}
			lens[b]++
		}
	}
}

func maxInt(v []int) int {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// TestPhi3Int4AccuracyLevel4 checks the int4 model as the fast CPU export
// runs it: MatMulNBits at accuracy level 4 rounds each block of 32
// activations to int8 with step max|x|/127, so each product picks up a
// relative error of about step/(2·sqrt(3)·rms(x)) ≈ 0.7% (max/rms is about
// 2.5 for 32 Gaussian values); across the model's eleven products this
// measures 0.8–1.5% of the logits' RMS. The test allows 4%, and the
// reference's greedy token wherever its lead over the runner-up exceeds
// 0.5, twenty times the measured RMS error of about 0.025.
func TestPhi3Int4AccuracyLevel4(t *testing.T) {
	r := openPhi3(t, tinyAt(Phi3Int4, 4))
	logits, _ := r.mustRun(t, 1, phi3Prompt, ones(len(phi3Prompt)), nil)
	want := r.ref.forward(phi3Prompt)
	v := r.c.VocabSize
	for p := range phi3Prompt {
		got, ref := logits[p*v:(p+1)*v], want.logits[p]
		var errSq, refSq float64
		for i, x := range ref {
			errSq += (float64(got[i]) - x) * (float64(got[i]) - x)
			refSq += x * x
		}
		if rel := math.Sqrt(errSq / refSq); rel > 0.04 {
			t.Errorf("position %d: logits differ by %.1f%% RMS", p, 100*rel)
		}
		best := argmax64(ref)
		runnerUp := math.Inf(-1)
		for i, x := range ref {
			if i != best {
				runnerUp = math.Max(runnerUp, x)
			}
		}
		if a := argmax32(got); a != best && ref[best]-runnerUp > 0.5 {
			t.Errorf("position %d: greedy token %d, reference %d leads by %g", p, a, best, ref[best]-runnerUp)
		}
	}
}

// TestPhi3ChunkedPrefill continues a cached prompt with several tokens in
// one run (batch 1), as chunked prefill does.
func TestPhi3ChunkedPrefill(t *testing.T) {
	r := openPhi3(t, tinyAt(Phi3FP32, 0))
	want := r.ref.forward(phi3Prompt)
	kv := newKVCache(r.c, 1, 24)
	views := r.view(t, kv, 0, 1)
	v := r.c.VocabSize
	for _, chunk := range [][2]int{{0, 4}, {4, 9}, {9, 10}, {10, 18}} {
		logits, _ := r.mustRun(t, 1, phi3Prompt[chunk[0]:chunk[1]], ones(chunk[1]), views)
		for p := chunk[0]; p < chunk[1]; p++ {
			off := (p - chunk[0]) * v
			if d, at := maxAbsDiff(logits[off:off+v], want.logits[p]); d > 1e-4 {
				t.Errorf("chunk %v position %d: logit %d differs by %g", chunk, p, at, d)
			}
		}
	}
}

// TestPhi3GQALimits pins the runs GroupQueryAttention refuses.
func TestPhi3GQALimits(t *testing.T) {
	const maxLen = 12
	r := openPhi3(t, tinyAt(Phi3FP32, 0))
	cases := []struct {
		name  string
		batch int
		ids   []int64
		mask  []int64
	}{
		// A continued prefill (more than one token after cached ones)
		// needs batch 1.
		{"two rows of two tokens after a cached prefix", 2, []int64{100, 101, 102, 103}, phi3Mask([]int{6, 6}, 6, false)},
		// The present output is [batch, kv, max(mask width, maxLen), hd],
		// which must be the shared buffer's shape.
		{"mask wider than the buffer", 1, []int64{100}, ones(maxLen + 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kv := newKVCache(r.c, tc.batch, maxLen)
			views := r.view(t, kv, 0, tc.batch)
			for b := range tc.batch {
				r.mustRun(t, 1, phi3Prompt[:4], ones(4), r.view(t, kv, b, 1))
			}
			if _, _, err := r.run(t, tc.batch, tc.ids, tc.mask, views); err == nil {
				t.Fatal("the runtime accepted the run")
			}
		})
	}
}
