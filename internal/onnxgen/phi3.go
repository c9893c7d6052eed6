package onnxgen

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/modelserver/modelserver/internal/onnxpb"
	"github.com/modelserver/modelserver/internal/phi3assets"
	"github.com/modelserver/modelserver/tensor"
)

// Phi-3 precisions: the weight formats of the onnxruntime-genai exports.
const (
	// Phi3FP32 stores every weight as float32 and multiplies with MatMul.
	Phi3FP32 = "fp32"
	// Phi3Int4 quantizes every MatMul weight, lm_head included, to symmetric
	// 4-bit blocks (round to nearest, float32 scales) run by com.microsoft
	// MatMulNBits; the embedding table stays float32.
	Phi3Int4 = "int4"
	// Phi3FP16 is the format of the cuda-fp16 export: every weight, the
	// rotary caches, the past and present keys and values and the logits
	// are float16, and the graph computes in float16 (MatMul, not
	// MatMulNBits). ONNX Runtime's CPU provider runs it too, more slowly.
	Phi3FP16 = "fp16"
)

// Phi-3 attention layouts: the two graph styles of the onnxruntime-genai
// exports.
const (
	// Phi3GQA is the current export: com.microsoft GroupQueryAttention with
	// the rotary embedding fused in, no position_ids input, and past and
	// present sharing one buffer (genai_config's
	// past_present_share_buffer true).
	Phi3GQA = "gqa"
	// Phi3MHA is the CPU export of the April 2024 model builder:
	// com.microsoft RotaryEmbedding on the queries and keys, which reads a
	// position_ids input, then com.microsoft MultiHeadAttention with a
	// causal mask built in the graph from the 2D attention mask; each run
	// returns fresh presents, the pasts with the new tokens appended
	// (past_present_share_buffer false). MultiHeadAttention needs as many
	// key/value heads as query heads.
	Phi3MHA = "mha"
)

// Names of the files WritePhi3Dir writes, those of the onnxruntime-genai
// export (the .onnx file finds its data file by this literal name).
const (
	Phi3ModelFile           = "model.onnx"
	Phi3DataFile            = "model.onnx.data"
	Phi3GenAIConfigFile     = "genai_config.json"
	Phi3TokenizerFile       = "tokenizer.json"
	Phi3TokenizerConfigFile = "tokenizer_config.json"
	Phi3HFConfigFile        = "config.json"
)

// Phi-3-mini's token ids and constants that the generated models share.
const (
	phi3BOS = 1
	// phi3EndOfText (<|endoftext|>) is the pad token and the first end of
	// sequence token; <|assistant|> and <|end|> also end a sequence.
	phi3EndOfText = 32000
	phi3Assistant = 32001
	phi3End       = 32007
	// phi3TokenizerVocab is the number of ids the tokenizer knows (32000 BPE
	// pieces and 11 added tokens). The rows above it in the embedding and in
	// lm_head are padding, zero in the generated weights, so their logit is
	// exactly 0.
	phi3TokenizerVocab = 32011
	phi3RopeTheta      = 10000
	phi3RMSEpsilon     = 1e-5
	// phi3MinExternalBytes is the size from which an initializer's data goes
	// to the external data file (the onnx package's default threshold).
	phi3MinExternalBytes = 1024
	microsoftDomain      = "com.microsoft"
)

// phi3ChatTemplate is Phi-3-mini's current chat template, with a system role.
const phi3ChatTemplate = `{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}`

// Limits that keep a typo from exhausting memory: Phi-3's longest context
// (Phi-3-mini-128k) and about the parameters of Phi-3-mini, whose weights
// the generator holds in memory twice. maxPhi3Dim bounds each size so that
// Params cannot overflow.
const (
	maxPhi3Context = 131072
	maxPhi3Params  = 4_000_000_000
	maxPhi3Dim     = 1 << 20
)

// ErrInvalidPhi3Config reports a Phi3Config that WritePhi3Dir cannot build.
var ErrInvalidPhi3Config = errors.New("onnxgen: invalid Phi-3 config")

// Phi3Config sizes a random-weight model of the Phi-3 architecture. Hidden
// must equal Heads·HeadDim, as in Hugging Face's Phi-3.
type Phi3Config struct {
	// VocabSize is the number of logits, at least 32011 (every id the
	// Phi-3 tokenizer produces); Phi-3-mini has 32064.
	VocabSize int
	// Hidden is the width of the residual stream.
	Hidden int
	// Layers is the number of decoder layers.
	Layers int
	// Heads is the number of query heads; KVHeads (which divides it) the
	// number of key and value heads.
	Heads, KVHeads int
	// HeadDim is the width of one head: a multiple of 16, which
	// GroupQueryAttention needs with fused rotary embeddings.
	HeadDim int
	// Intermediate is the width of the MLP.
	Intermediate int
	// ContextLength is the most tokens a sequence may hold: the rows of the
	// rotary cos/sin caches and genai_config's context_length and
	// search.max_length.
	ContextLength int
	// Precision is Phi3FP32, Phi3Int4 or Phi3FP16.
	Precision string
	// Attention is Phi3GQA (also when empty) or Phi3MHA. The weights do not
	// depend on it: with KVHeads == Heads both layouts compute the same
	// logits.
	Attention string
	// BlockSize is the int4 quantization block along K: a power of two of
	// at least 16 that divides Hidden and Intermediate. Unused in fp32 and
	// fp16.
	BlockSize int
	// AccuracyLevel is MatMulNBits' accuracy_level in int4: 0 or 1 computes
	// in float32, 4 quantizes the activations to int8 (faster on CPUs, less
	// exact). Unused in fp32 and fp16.
	AccuracyLevel int
	// Seed selects the weights. The models of one seed and size share their
	// weights before quantization or rounding to float16.
	Seed uint64
}

// Phi3Tiny returns the size of the test model: 2 layers of width 64, 4 query
// and 2 key/value heads of 16, an MLP of 128, 4096 tokens of context and
// Phi-3-mini's vocabulary, in float32. Its weights take 17 MB (10 MB in
// int4, 8 MB in fp16), most of it the embedding table and lm_head.
func Phi3Tiny() Phi3Config {
	return Phi3Config{
		VocabSize: 32064, Hidden: 64, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16,
		Intermediate: 128, ContextLength: 4096, Precision: Phi3FP32, BlockSize: 32, AccuracyLevel: 4,
	}
}

// Phi3Mid returns a benchmark size of about 160M parameters: 8 layers of
// width 1024, 16 query and 8 key/value heads of 64, an MLP of 2816 and 2048
// tokens of context, in float32 (set Precision to Phi3Int4 for the CPU
// export's format). Its weights take 641 MB (211 MB in int4).
func Phi3Mid() Phi3Config {
	return Phi3Config{
		VocabSize: 32064, Hidden: 1024, Layers: 8, Heads: 16, KVHeads: 8, HeadDim: 64,
		Intermediate: 2816, ContextLength: 2048, Precision: Phi3FP32, BlockSize: 32, AccuracyLevel: 4,
	}
}

// Validate reports whether WritePhi3Dir can build c, wrapping
// ErrInvalidPhi3Config.
func (c Phi3Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidPhi3Config, fmt.Sprintf(format, args...))
	}
	switch {
	case c.VocabSize < phi3TokenizerVocab:
		return bad("vocab size %d: the tokenizer needs at least %d", c.VocabSize, phi3TokenizerVocab)
	case c.Hidden < 1 || c.Layers < 1 || c.Heads < 1 || c.KVHeads < 1 || c.HeadDim < 1 || c.Intermediate < 1 || c.ContextLength < 1:
		return bad("sizes must be positive: %+v", c)
	case c.Heads%c.KVHeads != 0:
		return bad("%d heads are not a multiple of %d key/value heads", c.Heads, c.KVHeads)
	case c.Hidden != c.Heads*c.HeadDim:
		return bad("hidden size %d is not heads %d × head dim %d", c.Hidden, c.Heads, c.HeadDim)
	case c.HeadDim%16 != 0:
		return bad("head dim %d: GroupQueryAttention with rotary embeddings needs a multiple of 16", c.HeadDim)
	case c.Attention != "" && c.Attention != Phi3GQA && c.Attention != Phi3MHA:
		return bad("attention %q: want %q or %q", c.Attention, Phi3GQA, Phi3MHA)
	case c.Attention == Phi3MHA && c.KVHeads != c.Heads:
		return bad("%d key/value heads: MultiHeadAttention needs as many as the %d query heads", c.KVHeads, c.Heads)
	case c.ContextLength > maxPhi3Context:
		return bad("context length %d: at most %d", c.ContextLength, maxPhi3Context)
	case c.VocabSize > maxPhi3Dim || c.Hidden > maxPhi3Dim || c.Intermediate > maxPhi3Dim || c.Layers > maxPhi3Dim || c.Params() > maxPhi3Params:
		return bad("%d parameters: at most %d", c.Params(), maxPhi3Params)
	}
	switch c.Precision {
	case Phi3FP32, Phi3FP16:
	case Phi3Int4:
		switch {
		case c.BlockSize < 16 || c.BlockSize&(c.BlockSize-1) != 0:
			return bad("block size %d: must be a power of two of at least 16", c.BlockSize)
		case c.Hidden%c.BlockSize != 0 || c.Intermediate%c.BlockSize != 0:
			return bad("block size %d must divide the hidden size %d and the MLP size %d", c.BlockSize, c.Hidden, c.Intermediate)
		case c.AccuracyLevel < 0 || c.AccuracyLevel > 4:
			return bad("accuracy level %d: must be 0 to 4", c.AccuracyLevel)
		}
	default:
		return bad("precision %q: want %q, %q or %q", c.Precision, Phi3FP32, Phi3Int4, Phi3FP16)
	}
	return nil
}

// Params returns the number of parameters of c: embedding, projections,
// norm weights and lm_head.
func (c Phi3Config) Params() int64 {
	h, kv, m := int64(c.Hidden), int64(c.KVHeads*c.HeadDim), int64(c.Intermediate)
	layer := h*(h+2*kv) + h*h + 3*h*m + 2*h
	return 2*int64(c.VocabSize)*h + int64(c.Layers)*layer + h
}

// matrix is a weight of a MatMul, row-major [rows=K, cols=N], multiplied as
// x[…, K]·w. In int4 the values are the dequantized weights, and packed and
// scales hold MatMulNBits' inputs. In fp16 the values are rounded to
// float16.
type matrix struct {
	rows, cols int
	values     []float32
	// packed is MatMulNBits' B, uint8 [N, K/block, block/2]: the 4-bit
	// values of column n, block j, low nibble first.
	packed []byte
	// scales is MatMulNBits' scales, float32 [N·K/block], column-major.
	scales []float32
}

// phi3Layer holds one decoder layer's weights.
type phi3Layer struct {
	inputNorm, postAttentionNorm []float32
	// qkv packs the query, key and value projections along N, in that order.
	qkv, o, gate, up, down *matrix
}

// phi3Weights holds a whole model's weights, in fp16 each rounded to
// float16 (so that a reference computing with them uses the model's very
// weights).
type phi3Weights struct {
	embed     []float32 // [VocabSize, Hidden]
	layers    []phi3Layer
	finalNorm []float32
	lmHead    *matrix
	// cos and sin are the rotary caches [ContextLength, HeadDim/2].
	cos, sin []float32
}

// newPhi3Weights draws the weights of c, which must be valid. The residual
// stream starts at unit scale, each projection keeps it there (standard
// deviation 1/sqrt(K)), and lm_head gives logits of standard deviation
// about 2, so greedy decoding wanders over the vocabulary rather than
// repeating one token.
func newPhi3Weights(c Phi3Config) *phi3Weights {
	r := newRand(c.Seed)
	normal := func(n int, std float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * std)
		}
		return v
	}
	fp16 := c.Precision == Phi3FP16
	round := func(v []float32) []float32 {
		if fp16 {
			roundToFloat16(v)
		}
		return v
	}
	gamma := func() []float32 {
		v := normal(c.Hidden, 0.1)
		for i := range v {
			v[i]++
		}
		return round(v)
	}
	newMatrix := func(rows, cols int, std float64) *matrix {
		m := &matrix{rows: rows, cols: cols, values: round(normal(rows*cols, std))}
		if c.Precision == Phi3Int4 {
			m.quantize(c.BlockSize)
		}
		return m
	}
	w := &phi3Weights{embed: round(normal(c.VocabSize*c.Hidden, 1))}
	clear(w.embed[phi3TokenizerVocab*c.Hidden:])
	kvWidth := c.KVHeads * c.HeadDim
	for range c.Layers {
		hidden := 1 / math.Sqrt(float64(c.Hidden))
		w.layers = append(w.layers, phi3Layer{
			inputNorm:         gamma(),
			qkv:               newMatrix(c.Hidden, c.Hidden+2*kvWidth, hidden),
			o:                 newMatrix(c.Hidden, c.Hidden, hidden),
			postAttentionNorm: gamma(),
			gate:              newMatrix(c.Hidden, c.Intermediate, hidden),
			up:                newMatrix(c.Hidden, c.Intermediate, hidden),
			down:              newMatrix(c.Intermediate, c.Hidden, 1/math.Sqrt(float64(c.Intermediate))),
		})
	}
	w.finalNorm = gamma()
	lm := normal(c.Hidden*c.VocabSize, 2/math.Sqrt(float64(c.Hidden)))
	for k := range c.Hidden {
		clear(lm[k*c.VocabSize+phi3TokenizerVocab : (k+1)*c.VocabSize])
	}
	w.lmHead = &matrix{rows: c.Hidden, cols: c.VocabSize, values: round(lm)}
	if c.Precision == Phi3Int4 {
		w.lmHead.quantize(c.BlockSize)
	}
	half := c.HeadDim / 2
	w.cos, w.sin = make([]float32, c.ContextLength*half), make([]float32, c.ContextLength*half)
	for p := range c.ContextLength {
		for i := range half {
			angle := float64(p) * math.Pow(phi3RopeTheta, -2*float64(i)/float64(c.HeadDim))
			w.cos[p*half+i] = float32(math.Cos(angle))
			w.sin[p*half+i] = float32(math.Sin(angle))
		}
	}
	round(w.cos)
	round(w.sin)
	return w
}

// quantize rounds m to symmetric 4-bit blocks of block values along K, the
// way ONNX Runtime's blockwise quantizer does: the block's value of largest
// magnitude maps to -8, the scale is that value / -8, and q = round(v/scale)
// + 8 clamped to [0, 15], so the dequantized value is (q-8)·scale. values
// become the dequantized weights.
func (m *matrix) quantize(block int) {
	blocks := m.rows / block
	m.packed = make([]byte, m.cols*m.rows/2)
	m.scales = make([]float32, m.cols*blocks)
	for n := range m.cols {
		for j := range blocks {
			var extreme float32
			for i := range block {
				if v := m.values[(j*block+i)*m.cols+n]; abs32(v) > abs32(extreme) {
					extreme = v
				}
			}
			scale := extreme / -8
			m.scales[n*blocks+j] = scale
			for i := range block {
				at := (j*block+i)*m.cols + n
				q := 8
				if scale != 0 {
					q = min(max(int(math.RoundToEven(float64(m.values[at]/scale)))+8, 0), 15)
				}
				m.values[at] = float32(q-8) * scale
				b := &m.packed[(n*blocks+j)*block/2+i/2]
				*b |= byte(q) << (4 * (i % 2))
			}
		}
	}
}

func abs32(v float32) float32 { return float32(math.Abs(float64(v))) }

// phi3Graph builds the decoder graph of c with weights w, in the layout of
// the onnxruntime-genai export with c's attention style (position_ids only
// in Phi3MHA):
//
//	inputs:  input_ids int64 [batch_size, sequence_length]
//	         attention_mask int64 [batch_size, total_sequence_length]
//	         position_ids int64 [batch_size, sequence_length]
//	         past_key_values.%d.key, past_key_values.%d.value
//	             io [batch_size, KVHeads, past_sequence_length, HeadDim]
//	outputs: logits io [batch_size, sequence_length, VocabSize]
//	         present.%d.key, present.%d.value
//	             io [batch_size, KVHeads, total_sequence_length, HeadDim]
//
// where io is float16 in Phi3FP16 and float32 otherwise.
func phi3Graph(c Phi3Config, w *phi3Weights) *Builder {
	b := NewBuilder("phi3", opset)
	b.ImportDomain(microsoftDomain, 1)
	batch, seq, total, past := Sym("batch_size"), Sym("sequence_length"), Sym("total_sequence_length"), Sym("past_sequence_length")
	kv, hd := Fixed(int64(c.KVHeads)), Fixed(int64(c.HeadDim))
	io := c.ioType()
	b.Input("input_ids", tensor.Int64, batch, seq)
	b.Input("attention_mask", tensor.Int64, batch, total)
	mha := c.Attention == Phi3MHA
	if mha {
		b.Input("position_ids", tensor.Int64, batch, seq)
	}
	for i := range c.Layers {
		b.Input(fmt.Sprintf("past_key_values.%d.key", i), io, batch, kv, past, hd)
		b.Input(fmt.Sprintf("past_key_values.%d.value", i), io, batch, kv, past, hd)
	}
	b.Output("logits", io, batch, seq, Fixed(int64(c.VocabSize)))
	for i := range c.Layers {
		b.Output(fmt.Sprintf("present.%d.key", i), io, batch, kv, total, hd)
		b.Output(fmt.Sprintf("present.%d.value", i), io, batch, kv, total, hd)
	}

	b.Initializer("one_i64", int64Tensor(nil, []int64{1}))
	b.Initializer("axis_1", int64Tensor([]int64{1}, []int64{1}))
	if mha {
		phi3CausalBias(b, io)
		kvWidth := int64(c.KVHeads * c.HeadDim)
		b.Initializer("qkv_split", int64Tensor([]int64{3}, []int64{int64(c.Hidden), kvWidth, kvWidth}))
	} else {
		// GroupQueryAttention reads the sequence lengths from the mask's
		// row sums and width only.
		b.Node("ReduceSum", []string{"attention_mask", "axis_1"}, []string{"mask_row_sums"}, Int("keepdims", 0))
		b.Node("Sub", []string{"mask_row_sums", "one_i64"}, []string{"seqlens_k_i64"})
		b.Node("Cast", []string{"seqlens_k_i64"}, []string{"seqlens_k"}, Int("to", int64(onnxpb.TensorProto_INT32)))
		b.Node("Shape", []string{"attention_mask"}, []string{"mask_shape"})
		b.Node("Gather", []string{"mask_shape", "one_i64"}, []string{"total_seq_len_i64"}, Int("axis", 0))
		b.Node("Cast", []string{"total_seq_len_i64"}, []string{"total_seq_len"}, Int("to", int64(onnxpb.TensorProto_INT32)))
	}
	b.Initializer("cos_cache", floatTensor(io, []int64{int64(c.ContextLength), int64(c.HeadDim / 2)}, w.cos))
	b.Initializer("sin_cache", floatTensor(io, []int64{int64(c.ContextLength), int64(c.HeadDim / 2)}, w.sin))

	b.Initializer("model.embed_tokens.weight", floatTensor(io, []int64{int64(c.VocabSize), int64(c.Hidden)}, w.embed))
	b.Node("Gather", []string{"model.embed_tokens.weight", "input_ids"}, []string{"embeddings"})
	eps := Float("epsilon", phi3RMSEpsilon)
	b.Initializer("model.layers.0.input_layernorm.weight", floatTensor(io, []int64{int64(c.Hidden)}, w.layers[0].inputNorm))
	b.Node("SimplifiedLayerNormalization", []string{"embeddings", "model.layers.0.input_layernorm.weight"},
		[]string{"model.layers.0.input_layernorm.output"}, Int("axis", -1), eps, Int("stash_type", 1))
	x, residual := "model.layers.0.input_layernorm.output", "embeddings"

	for i, l := range w.layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		qkv := linear(b, c, p+"attn.qkv_proj", x, l.qkv)
		pastKey, pastValue := fmt.Sprintf("past_key_values.%d.key", i), fmt.Sprintf("past_key_values.%d.value", i)
		presents := []string{p + "attn.output", fmt.Sprintf("present.%d.key", i), fmt.Sprintf("present.%d.value", i)}
		scale := Float("scale", float32(1/math.Sqrt(float64(c.HeadDim))))
		if mha {
			q, k, v := p+"attn.q_proj.output", p+"attn.k_proj.output", p+"attn.v_proj.output"
			b.Node("Split", []string{qkv, "qkv_split"}, []string{q, k, v}, Int("axis", -1))
			for _, name := range []string{q, k} {
				b.DomainNode(microsoftDomain, "RotaryEmbedding", []string{name, "position_ids", "cos_cache", "sin_cache"},
					[]string{name + ".rotary"}, Int("interleaved", 0))
			}
			b.DomainNode(microsoftDomain, "MultiHeadAttention",
				[]string{q + ".rotary", k + ".rotary", v, "", "", "attention_bias", pastKey, pastValue},
				presents, Int("num_heads", int64(c.Heads)), scale)
		} else {
			b.DomainNode(microsoftDomain, "GroupQueryAttention",
				[]string{qkv, "", "", pastKey, pastValue, "seqlens_k", "total_seq_len", "cos_cache", "sin_cache"},
				presents, Int("num_heads", int64(c.Heads)), Int("kv_num_heads", int64(c.KVHeads)),
				scale, Int("do_rotary", 1), Int("rotary_interleaved", 0))
		}
		o := linear(b, c, p+"attn.o_proj", p+"attn.output", l.o)
		b.Initializer(p+"post_attention_layernorm.weight", floatTensor(io, []int64{int64(c.Hidden)}, l.postAttentionNorm))
		b.DomainNode(microsoftDomain, "SkipSimplifiedLayerNormalization", []string{o, residual, p + "post_attention_layernorm.weight"},
			[]string{p + "post_attention_layernorm.output", "", "", p + "post_attention_layernorm.residual"}, eps)
		x, residual = p+"post_attention_layernorm.output", p+"post_attention_layernorm.residual"

		gate := linear(b, c, p+"mlp.gate_proj", x, l.gate)
		up := linear(b, c, p+"mlp.up_proj", x, l.up)
		b.Node("Sigmoid", []string{gate}, []string{p + "mlp.act_fn.sigmoid"})
		b.Node("Mul", []string{gate, p + "mlp.act_fn.sigmoid"}, []string{p + "mlp.act_fn.output"})
		b.Node("Mul", []string{p + "mlp.act_fn.output", up}, []string{p + "mlp.gated"})
		down := linear(b, c, p+"mlp.down_proj", p+"mlp.gated", l.down)

		// The next layer's input norm, or the final norm, adds the MLP's
		// output to the residual stream.
		norm, name := w.finalNorm, "model.norm"
		if i+1 < c.Layers {
			norm, name = w.layers[i+1].inputNorm, fmt.Sprintf("model.layers.%d.input_layernorm", i+1)
		}
		b.Initializer(name+".weight", floatTensor(io, []int64{int64(c.Hidden)}, norm))
		b.DomainNode(microsoftDomain, "SkipSimplifiedLayerNormalization", []string{down, residual, name + ".weight"},
			[]string{name + ".output", "", "", name + ".residual"}, eps)
		x, residual = name+".output", name+".residual"
	}
	b.Node("Identity", []string{linear(b, c, "lm_head", x, w.lmHead)}, []string{"logits"})
	return b
}

// phi3CausalBias adds the nodes that expand the 2D attention mask [batch,
// total] into MultiHeadAttention's additive attention_bias [batch, 1, seq,
// total] of type io: query i (at position total-seq+i) may attend to key j
// when j ≤ total-seq+i and the mask holds 1 at j; elsewhere the bias is io's
// lowest finite value, so the key's weight is exactly 0. The mask may hold
// 0s anywhere, so a batch's pasts can be right-padded to a common length.
func phi3CausalBias(b *Builder, io tensor.DType) {
	b.Initializer("zero_i64", int64Tensor(nil, []int64{0}))
	b.Initializer("axes_1_2", int64Tensor([]int64{2}, []int64{1, 2}))
	lowest := float32(-math.MaxFloat32)
	if io == tensor.Float16 {
		lowest = -maxFloat16
	}
	b.Initializer("bias_zero", floatTensor(io, nil, []float32{0}))
	b.Initializer("bias_lowest", floatTensor(io, nil, []float32{lowest}))
	b.Node("Shape", []string{"attention_mask"}, []string{"mask_shape"})
	b.Node("Gather", []string{"mask_shape", "one_i64"}, []string{"total_seq_len"}, Int("axis", 0))
	b.Node("Shape", []string{"input_ids"}, []string{"input_shape"})
	b.Node("Gather", []string{"input_shape", "one_i64"}, []string{"seq_len"}, Int("axis", 0))
	b.Node("Sub", []string{"total_seq_len", "seq_len"}, []string{"past_seq_len"})
	b.Node("Range", []string{"zero_i64", "total_seq_len", "one_i64"}, []string{"key_positions"})
	b.Node("Range", []string{"past_seq_len", "total_seq_len", "one_i64"}, []string{"query_positions"})
	b.Node("Unsqueeze", []string{"query_positions", "axis_1"}, []string{"query_positions_column"})
	b.Node("LessOrEqual", []string{"key_positions", "query_positions_column"}, []string{"causal"})
	b.Node("Cast", []string{"attention_mask"}, []string{"mask_bool"}, Int("to", int64(onnxpb.TensorProto_BOOL)))
	b.Node("Unsqueeze", []string{"mask_bool", "axes_1_2"}, []string{"mask_bool_4d"})
	b.Node("And", []string{"causal", "mask_bool_4d"}, []string{"attend"})
	b.Node("Where", []string{"attend", "bias_zero", "bias_lowest"}, []string{"attention_bias"})
}

// linear multiplies x by m under name, with MatMul in fp32 and fp16 and
// MatMulNBits in int4, and returns the product's name.
func linear(b *Builder, c Phi3Config, name, x string, m *matrix) string {
	out := name + ".output"
	if c.Precision != Phi3Int4 {
		b.Initializer(name+".weight", floatTensor(c.ioType(), []int64{int64(m.rows), int64(m.cols)}, m.values))
		b.Node("MatMul", []string{x, name + ".weight"}, []string{out})
		return out
	}
	blocks := m.rows / c.BlockSize
	b.Initializer(name+".weight_q4", tensor.Tensor{DType: tensor.Uint8,
		Shape: []int64{int64(m.cols), int64(blocks), int64(c.BlockSize / 2)}, Data: m.packed})
	b.Initializer(name+".weight_scales", float32Tensor([]int64{int64(m.cols * blocks)}, m.scales))
	b.DomainNode(microsoftDomain, "MatMulNBits", []string{x, name + ".weight_q4", name + ".weight_scales"}, []string{out},
		Int("K", int64(m.rows)), Int("N", int64(m.cols)), Int("bits", 4), Int("block_size", int64(c.BlockSize)),
		Int("accuracy_level", int64(c.AccuracyLevel)))
	return out
}

// WritePhi3Dir writes a random-weight Phi-3 model of configuration c into
// dir (created if missing) in the file layout of an onnxruntime-genai export:
// model.onnx with its weights in model.onnx.data, genai_config.json,
// tokenizer.json and tokenizer_config.json (Phi-3's tokenizer with
// Phi-3-mini's current chat template) and a Hugging Face style config.json.
// Existing files of those names are replaced. It returns an error wrapping
// ErrInvalidPhi3Config for an invalid c.
func WritePhi3Dir(dir string, c Phi3Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("onnxgen: %w", err)
	}
	if err := writePhi3Model(dir, c); err != nil {
		return err
	}
	tokenizerConfig, err := phi3TokenizerConfig()
	if err != nil {
		return err
	}
	genAI, err := json.MarshalIndent(phi3GenAIConfig(c), "", "  ")
	if err != nil {
		return fmt.Errorf("onnxgen: %s: %w", Phi3GenAIConfigFile, err)
	}
	hf, err := json.MarshalIndent(phi3HFConfig(c), "", "  ")
	if err != nil {
		return fmt.Errorf("onnxgen: %s: %w", Phi3HFConfigFile, err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{Phi3GenAIConfigFile, append(genAI, '\n')},
		{Phi3HFConfigFile, append(hf, '\n')},
		{Phi3TokenizerFile, phi3assets.TokenizerJSON},
		{Phi3TokenizerConfigFile, tokenizerConfig},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("onnxgen: %w", err)
		}
	}
	return nil
}

func writePhi3Model(dir string, c Phi3Config) error {
	b := phi3Graph(c, newPhi3Weights(c))
	f, err := os.Create(filepath.Join(dir, Phi3DataFile))
	if err != nil {
		return fmt.Errorf("onnxgen: %w", err)
	}
	data := bufio.NewWriterSize(f, 1<<20)
	model, err := b.BytesExternal(Phi3DataFile, data, phi3MinExternalBytes)
	if err == nil {
		err = data.Flush()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("onnxgen: writing %s: %w", Phi3DataFile, err)
	}
	if err := os.WriteFile(filepath.Join(dir, Phi3ModelFile), model, 0o644); err != nil {
		return fmt.Errorf("onnxgen: %w", err)
	}
	return nil
}

// phi3TokenizerConfig returns phi3assets' tokenizer_config.json with
// Phi-3-mini's chat template. Keys come out sorted, as Hugging Face writes
// them.
func phi3TokenizerConfig() ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(phi3assets.TokenizerConfigJSON, &fields); err != nil {
		return nil, fmt.Errorf("onnxgen: embedded tokenizer_config.json: %w", err)
	}
	template, err := json.Marshal(phi3ChatTemplate)
	if err != nil {
		return nil, fmt.Errorf("onnxgen: chat template: %w", err)
	}
	fields["chat_template"] = template
	out, err := json.MarshalIndent(fields, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("onnxgen: tokenizer_config.json: %w", err)
	}
	return append(out, '\n'), nil
}

// genAIConfig is the part of onnxruntime-genai's genai_config.json that a
// Phi-3 export writes, fields in the export's order.
type genAIConfig struct {
	Model  genAIModel  `json:"model"`
	Search genAISearch `json:"search"`
}

type genAIModel struct {
	BOSTokenID    int          `json:"bos_token_id"`
	ContextLength int          `json:"context_length"`
	Decoder       genAIDecoder `json:"decoder"`
	EOSTokenID    []int        `json:"eos_token_id"`
	PadTokenID    int          `json:"pad_token_id"`
	Type          string       `json:"type"`
	VocabSize     int          `json:"vocab_size"`
}

type genAIDecoder struct {
	SessionOptions    genAISessionOptions `json:"session_options"`
	Filename          string              `json:"filename"`
	HeadSize          int                 `json:"head_size"`
	HiddenSize        int                 `json:"hidden_size"`
	Inputs            genAIInputs         `json:"inputs"`
	Outputs           genAIOutputs        `json:"outputs"`
	NumAttentionHeads int                 `json:"num_attention_heads"`
	NumHiddenLayers   int                 `json:"num_hidden_layers"`
	NumKeyValueHeads  int                 `json:"num_key_value_heads"`
}

type genAISessionOptions struct {
	LogID           string              `json:"log_id"`
	ProviderOptions []map[string]string `json:"provider_options"`
}

type genAIInputs struct {
	InputIDs       string `json:"input_ids"`
	AttentionMask  string `json:"attention_mask"`
	PositionIDs    string `json:"position_ids,omitempty"`
	PastKeyNames   string `json:"past_key_names"`
	PastValueNames string `json:"past_value_names"`
}

type genAIOutputs struct {
	Logits            string `json:"logits"`
	PresentKeyNames   string `json:"present_key_names"`
	PresentValueNames string `json:"present_value_names"`
}

type genAISearch struct {
	DiversityPenalty       float64 `json:"diversity_penalty"`
	DoSample               bool    `json:"do_sample"`
	EarlyStopping          bool    `json:"early_stopping"`
	LengthPenalty          float64 `json:"length_penalty"`
	MaxLength              int     `json:"max_length"`
	MinLength              int     `json:"min_length"`
	NoRepeatNgramSize      int     `json:"no_repeat_ngram_size"`
	NumBeams               int     `json:"num_beams"`
	NumReturnSequences     int     `json:"num_return_sequences"`
	PastPresentShareBuffer bool    `json:"past_present_share_buffer"`
	RepetitionPenalty      float64 `json:"repetition_penalty"`
	Temperature            float64 `json:"temperature"`
	TopK                   int     `json:"top_k"`
	TopP                   float64 `json:"top_p"`
}

func phi3GenAIConfig(c Phi3Config) genAIConfig {
	mha := c.Attention == Phi3MHA
	inputs := genAIInputs{InputIDs: "input_ids", AttentionMask: "attention_mask",
		PastKeyNames: "past_key_values.%d.key", PastValueNames: "past_key_values.%d.value"}
	if mha {
		inputs.PositionIDs = "position_ids"
	}
	return genAIConfig{
		Model: genAIModel{
			BOSTokenID:    phi3BOS,
			ContextLength: c.ContextLength,
			Decoder: genAIDecoder{
				SessionOptions:    genAISessionOptions{LogID: "onnxruntime-genai", ProviderOptions: []map[string]string{}},
				Filename:          Phi3ModelFile,
				HeadSize:          c.HeadDim,
				HiddenSize:        c.Hidden,
				Inputs:            inputs,
				Outputs:           genAIOutputs{"logits", "present.%d.key", "present.%d.value"},
				NumAttentionHeads: c.Heads,
				NumHiddenLayers:   c.Layers,
				NumKeyValueHeads:  c.KVHeads,
			},
			EOSTokenID: []int{phi3EndOfText, phi3Assistant, phi3End},
			PadTokenID: phi3EndOfText,
			Type:       "phi3",
			VocabSize:  c.VocabSize,
		},
		Search: genAISearch{
			EarlyStopping: true, LengthPenalty: 1, MaxLength: c.ContextLength, NumBeams: 1, NumReturnSequences: 1,
			PastPresentShareBuffer: !mha, RepetitionPenalty: 1, Temperature: 1, TopK: 1, TopP: 1,
		},
	}
}

// hfConfig is a Hugging Face config.json for Phi3ForCausalLM.
type hfConfig struct {
	Architectures                 []string  `json:"architectures"`
	AttentionBias                 bool      `json:"attention_bias"`
	BOSTokenID                    int       `json:"bos_token_id"`
	EOSTokenID                    int       `json:"eos_token_id"`
	HiddenAct                     string    `json:"hidden_act"`
	HiddenSize                    int       `json:"hidden_size"`
	IntermediateSize              int       `json:"intermediate_size"`
	MaxPositionEmbeddings         int       `json:"max_position_embeddings"`
	ModelType                     string    `json:"model_type"`
	NumAttentionHeads             int       `json:"num_attention_heads"`
	NumHiddenLayers               int       `json:"num_hidden_layers"`
	NumKeyValueHeads              int       `json:"num_key_value_heads"`
	OriginalMaxPositionEmbeddings int       `json:"original_max_position_embeddings"`
	PadTokenID                    int       `json:"pad_token_id"`
	RMSNormEps                    float64   `json:"rms_norm_eps"`
	RopeScaling                   *struct{} `json:"rope_scaling"`
	RopeTheta                     float64   `json:"rope_theta"`
	SlidingWindow                 *int      `json:"sliding_window"`
	TieWordEmbeddings             bool      `json:"tie_word_embeddings"`
	TorchDType                    string    `json:"torch_dtype"`
	VocabSize                     int       `json:"vocab_size"`
}

func phi3HFConfig(c Phi3Config) hfConfig {
	return hfConfig{
		Architectures:                 []string{"Phi3ForCausalLM"},
		BOSTokenID:                    phi3BOS,
		EOSTokenID:                    phi3EndOfText,
		HiddenAct:                     "silu",
		HiddenSize:                    c.Hidden,
		IntermediateSize:              c.Intermediate,
		MaxPositionEmbeddings:         c.ContextLength,
		ModelType:                     "phi3",
		NumAttentionHeads:             c.Heads,
		NumHiddenLayers:               c.Layers,
		NumKeyValueHeads:              c.KVHeads,
		OriginalMaxPositionEmbeddings: c.ContextLength,
		PadTokenID:                    phi3EndOfText,
		RMSNormEps:                    phi3RMSEpsilon,
		RopeTheta:                     phi3RopeTheta,
		TorchDType:                    torchDType(c),
		VocabSize:                     c.VocabSize,
	}
}

// ioType is the element type of c's activations, keys, values and logits.
func (c Phi3Config) ioType() tensor.DType {
	if c.Precision == Phi3FP16 {
		return tensor.Float16
	}
	return tensor.Float32
}

func torchDType(c Phi3Config) string {
	if c.Precision == Phi3FP16 {
		return "float16"
	}
	return "float32"
}
