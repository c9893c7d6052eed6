package llm

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/onnxpb"
)

// graphValue is one graph input or output as the ONNX file declares it.
type graphValue struct {
	elem onnxpb.TensorProto_DataType
	dims []int64 // -1 for a symbolic dimension
}

// graphIO is what the decoder needs to know of the graph before running it.
type graphIO struct {
	inputs, outputs map[string]graphValue
	// inPlaceKV: the graph's attention is GroupQueryAttention, which writes
	// the new K/V into a past buffer bound as the present too. Other
	// attention ops (MultiHeadAttention in the 2024 CPU exports) return
	// presents that concatenate the pasts and the new K/V.
	inPlaceKV bool
}

// readGraphIO reads the graph's inputs (initializers excluded), outputs and
// attention op from the .onnx file. Weights in the external data file are
// not read.
func readGraphIO(path string) (graphIO, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return graphIO{}, fmt.Errorf("%w: %v", ErrModelLayout, err)
	}
	var model onnxpb.ModelProto
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, &model); err != nil {
		return graphIO{}, fmt.Errorf("%w: parsing %s: %v", ErrModelLayout, path, err)
	}
	g := model.GetGraph()
	var info graphIO
	for _, n := range g.GetNode() {
		if n.GetOpType() == "GroupQueryAttention" {
			info.inPlaceKV = true
		}
	}
	initializers := make(map[string]bool)
	for _, init := range g.GetInitializer() {
		initializers[init.GetName()] = true
	}
	read := func(vis []*onnxpb.ValueInfoProto) map[string]graphValue {
		m := make(map[string]graphValue)
		for _, vi := range vis {
			if initializers[vi.GetName()] {
				continue
			}
			tt := vi.GetType().GetTensorType()
			v := graphValue{elem: onnxpb.TensorProto_DataType(tt.GetElemType())}
			for _, d := range tt.GetShape().GetDim() {
				if dv, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok {
					v.dims = append(v.dims, dv.DimValue)
				} else {
					v.dims = append(v.dims, -1)
				}
			}
			m[vi.GetName()] = v
		}
		return m
	}
	info.inputs, info.outputs = read(g.GetInput()), read(g.GetOutput())
	return info, nil
}

// onnxDecoder runs a genai-layout decoder on ONNX Runtime. The KV cache is
// one Go buffer per layer and per K/V, shaped [slots, kv_heads, maxLen,
// head_dim]. Two export styles are supported:
//   - GroupQueryAttention (inPlaceKV): a run binds the same tensor (a view of
//     some slots) as past input and present output, which
//     GroupQueryAttention detects by pointer equality and then writes the
//     new K/V in place.
//   - Concatenating attention (MultiHeadAttention, the 2024 CPU export): a
//     run gathers its rows' K/V into pasts [batch, kv_heads, P, head_dim]
//     right-padded with zeros to P = the longest row, masks the padding, and
//     copies the new K/V at index P.. of the presents [batch, kv_heads, P+S,
//     head_dim] back into the slots. A decode of the same rows as the last
//     one (nothing joined, left or moved) skips the gather: the last
//     presents are its pasts as they are, with the last mask plus a 1 (the
//     rotary embedding is applied before caching, so a key's index need not
//     be its position). The pasts and presents are grow-only scratch
//     buffers, one pair for decodes and one for prefills, reused across
//     runs.
type onnxDecoder struct {
	session *ort.DynamicAdvancedSession
	runOpts *ort.RunOptions

	nSlots, maxLen           int
	layers, kvHeads, headDim int
	vocab                    int
	fp16                     bool // float16 KV and logits (CUDA exports)
	elemSize                 int
	positionIDs              bool // the graph takes position_ids
	prunedLogits             bool // logits hold only the last position
	inPlaceKV                bool // see graphIO.inPlaceKV

	// kv[2*layer] is the key and kv[2*layer+1] the value buffer.
	kv        [][]byte
	slotBytes int // bytes of one slot in one buffer
	// prefillViews[slot] and decodeViews[rows-1] are the KV tensors bound
	// as past and present, made on first use.
	prefillViews [][]ort.Value
	decodeViews  [][]ort.Value
	// Concatenating attention only: the decode and prefill scratch,
	// kvTensors the tensors over it for one run, and rowLens each run row's
	// cached length.
	decodeKV, prefillKV kvScratch
	kvTensors           []ort.Value
	rowLens             []int
	// After a decode of chainRows rows (0: none usable), decodeKV.pasts
	// holds its presents, chainLen long; chainMask (chainRows×chainLen)
	// marks their valid indices and chainLens the rows' cached lengths.
	chainRows, chainLen int
	chainMask           []int64
	chainLens           []int

	ids, mask, positions []int64
	logits               []float32 // float32 logits, or fp16 ones converted
	logitsFP16           []uint16
	inputs, outputs      []ort.Value
	run                  time.Duration
}

// decoderOptions size an onnxDecoder.
type decoderOptions struct {
	slots, maxLen, maxPrefill int
	onnx                      engine.ONNXOptions
}

// newONNXDecoder opens the decoder in dir, whose graph readGraphIO read.
func newONNXDecoder(dir string, cfg *genaiConfig, graph graphIO, o decoderOptions) (_ *onnxDecoder, err error) {
	if !ort.IsInitialized() {
		return nil, fmt.Errorf("%w: InitONNXRuntime was not called", engine.ErrRuntimeLibrary)
	}
	path := filepath.Join(dir, cfg.Model.Decoder.Filename)
	d := &onnxDecoder{
		nSlots: o.slots, maxLen: o.maxLen,
		layers:    cfg.Model.Decoder.NumHiddenLayers,
		kvHeads:   cfg.Model.Decoder.NumKeyValueHeads,
		headDim:   cfg.Model.Decoder.HeadSize,
		inPlaceKV: graph.inPlaceKV,
	}
	names := cfg.Model.Decoder
	inNames, outNames, err := d.checkGraph(cfg, graph.inputs, graph.outputs)
	if err != nil {
		return nil, err
	}
	vocab := d.vocab
	if cfg.Model.VocabSize > 0 && cfg.Model.VocabSize != vocab {
		return nil, fmt.Errorf("%w: %s says vocab_size %d, the graph's %s has %d", ErrModelLayout, genaiConfigFile, cfg.Model.VocabSize, names.Outputs.Logits, vocab)
	}

	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("llm: session options: %w", err)
	}
	defer so.Destroy()
	if o.onnx.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(o.onnx.IntraOpThreads); err != nil {
			return nil, fmt.Errorf("llm: session options: %w", err)
		}
	}
	if o.onnx.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(o.onnx.InterOpThreads); err != nil {
			return nil, fmt.Errorf("llm: session options: %w", err)
		}
	}
	if _, err := engine.AppendProviders(so, o.onnx.Execution); err != nil {
		return nil, err
	}
	// Loading from the path lets the runtime find model.onnx.data next to it.
	d.session, err = ort.NewDynamicAdvancedSession(path, inNames, outNames, so)
	if err != nil {
		return nil, fmt.Errorf("llm: creating ONNX Runtime session for %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if d.runOpts, err = ort.NewRunOptions(); err != nil {
		return nil, fmt.Errorf("llm: run options: %w", err)
	}

	d.slotBytes = d.kvHeads * d.maxLen * d.headDim * d.elemSize
	d.kv = make([][]byte, 2*d.layers)
	for i := range d.kv {
		d.kv[i] = make([]byte, d.nSlots*d.slotBytes)
	}
	d.prefillViews = make([][]ort.Value, d.nSlots)
	d.decodeViews = make([][]ort.Value, d.nSlots)
	rows := max(o.maxPrefill, d.nSlots)
	if d.prunedLogits {
		rows = d.nSlots
	}
	d.logits = make([]float32, rows*vocab)
	if d.fp16 {
		d.logitsFP16 = make([]uint16, rows*vocab)
	}
	n := max(o.maxPrefill, d.nSlots)
	d.ids = make([]int64, n)
	d.positions = make([]int64, n)
	d.mask = make([]int64, max(d.nSlots*d.maxLen, d.maxLen))
	d.inputs = make([]ort.Value, len(inNames))
	d.outputs = make([]ort.Value, len(outNames))
	if !d.inPlaceKV {
		d.decodeKV = newKVScratch(len(d.kv), d.nSlots*d.slotBytes)
		d.prefillKV = newKVScratch(len(d.kv), d.slotBytes)
		d.kvTensors = make([]ort.Value, 0, 2*len(d.kv))
		d.rowLens = make([]int, d.nSlots)
		d.chainMask = make([]int64, len(d.mask))
		d.chainLens = make([]int, d.nSlots)
	}
	return d, nil
}

// kvBytes is the KV cache's size for the given shape and element size.
func kvBytes(layers, slots, kvHeads, maxLen, headDim, elemSize int) int64 {
	return int64(2*layers) * int64(slots) * int64(kvHeads) * int64(maxLen) * int64(headDim) * int64(elemSize)
}

// checkGraph matches the graph's inputs and outputs with genai_config and
// returns the input and output names in the order the decoder binds them:
// input_ids, attention_mask, [position_ids], then K and V per layer; logits,
// then K and V per layer.
func (d *onnxDecoder) checkGraph(cfg *genaiConfig, inputs, outputs map[string]graphValue) (inNames, outNames []string, err error) {
	n := cfg.Model.Decoder
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrModelLayout, fmt.Sprintf(format, args...))
	}
	for _, name := range []string{n.Inputs.InputIDs, n.Inputs.AttentionMask} {
		v, ok := inputs[name]
		switch {
		case !ok:
			return nil, nil, bad("the graph has no input %q", name)
		case v.elem != onnxpb.TensorProto_INT64 || len(v.dims) != 2:
			return nil, nil, bad("input %q must be int64 [batch, length], is %v %v", name, v.elem, v.dims)
		}
	}
	inNames = []string{n.Inputs.InputIDs, n.Inputs.AttentionMask}
	if v, ok := inputs[n.Inputs.PositionIDs]; ok {
		if v.elem != onnxpb.TensorProto_INT64 || len(v.dims) != 2 {
			return nil, nil, bad("input %q must be int64 [batch, length], is %v %v", n.Inputs.PositionIDs, v.elem, v.dims)
		}
		d.positionIDs = true
		inNames = append(inNames, n.Inputs.PositionIDs)
	}
	logits, ok := outputs[n.Outputs.Logits]
	if !ok || len(logits.dims) != 3 || logits.dims[2] <= 0 {
		return nil, nil, bad("the graph needs an output %q shaped [batch, length, vocab] with a fixed vocab", n.Outputs.Logits)
	}
	switch logits.elem {
	case onnxpb.TensorProto_FLOAT:
		d.elemSize = 4
	case onnxpb.TensorProto_FLOAT16:
		d.fp16, d.elemSize = true, 2
	default:
		return nil, nil, bad("logits are %v; float32 and float16 are supported", logits.elem)
	}
	d.vocab = int(logits.dims[2])
	d.prunedLogits = logits.dims[1] == 1
	outNames = []string{n.Outputs.Logits}
	checkKV := func(m map[string]graphValue, name, what string) error {
		v, ok := m[name]
		switch {
		case !ok:
			return bad("the graph has no %s %q", what, name)
		case v.elem != logits.elem:
			return bad("%s %q is %v, the logits %v", what, name, v.elem, logits.elem)
		case len(v.dims) != 4 || (v.dims[1] >= 0 && int(v.dims[1]) != d.kvHeads) || (v.dims[3] >= 0 && int(v.dims[3]) != d.headDim):
			return bad("%s %q is %v; %s says [batch, %d kv heads, length, %d head size]", what, name, v.dims, genaiConfigFile, d.kvHeads, d.headDim)
		}
		return nil
	}
	for l := range d.layers {
		for _, p := range []string{n.Inputs.PastKeyNames, n.Inputs.PastValueNames} {
			name := fmt.Sprintf(p, l)
			if err := checkKV(inputs, name, "input"); err != nil {
				return nil, nil, err
			}
			inNames = append(inNames, name)
		}
		for _, p := range []string{n.Outputs.PresentKeyNames, n.Outputs.PresentValueNames} {
			name := fmt.Sprintf(p, l)
			if err := checkKV(outputs, name, "output"); err != nil {
				return nil, nil, err
			}
			outNames = append(outNames, name)
		}
	}
	if len(inputs) != len(inNames) {
		known := make(map[string]bool)
		for _, name := range inNames {
			known[name] = true
		}
		for name := range inputs {
			if !known[name] {
				return nil, nil, bad("the graph has an input %q that a genai decoder does not have", name)
			}
		}
	}
	if _, ok := inputs[fmt.Sprintf(n.Inputs.PastKeyNames, d.layers)]; ok {
		return nil, nil, bad("the graph has more than the %d layers %s names", d.layers, genaiConfigFile)
	}
	return inNames, outNames, nil
}

func (d *onnxDecoder) vocabSize() int { return d.vocab }
func (d *onnxDecoder) slots() int     { return d.nSlots }

func (d *onnxDecoder) runTime() time.Duration { return d.run }

func (d *onnxDecoder) interrupt() {
	if d.runOpts != nil {
		d.runOpts.Terminate()
	}
}

func (d *onnxDecoder) close() error {
	for _, views := range append(d.prefillViews, d.decodeViews...) {
		for _, v := range views {
			v.Destroy()
		}
	}
	d.prefillViews, d.decodeViews = nil, nil
	if d.runOpts != nil {
		d.runOpts.Destroy()
		d.runOpts = nil
	}
	if d.session == nil {
		return nil
	}
	err := d.session.Destroy()
	d.session = nil
	return err
}

// kvViews returns (making them on first use) the KV tensors covering rows
// slots from first, shaped [rows, kv_heads, maxLen, head_dim].
func (d *onnxDecoder) kvViews(cache [][]ort.Value, at, first, rows int) ([]ort.Value, error) {
	if cache[at] != nil {
		return cache[at], nil
	}
	elem := d.elemType()
	shape := ort.NewShape(int64(rows), int64(d.kvHeads), int64(d.maxLen), int64(d.headDim))
	views := make([]ort.Value, len(d.kv))
	for i, buf := range d.kv {
		v, err := ort.NewCustomDataTensor(shape, buf[first*d.slotBytes:(first+rows)*d.slotBytes], elem)
		if err != nil {
			for _, made := range views[:i] {
				made.Destroy()
			}
			return nil, fmt.Errorf("KV view: %w", err)
		}
		views[i] = v
	}
	cache[at] = views
	return views, nil
}

// prefill implements decoder.
func (d *onnxDecoder) prefill(slot int, tokens []int32, past int) ([]float32, error) {
	s := len(tokens)
	if s == 0 || s > len(d.ids) || past+s > d.maxLen || slot < 0 || slot >= d.nSlots {
		return nil, fmt.Errorf("prefill of %d tokens after %d in slot %d: outside the cache (%d slots of %d)", s, past, slot, d.nSlots, d.maxLen)
	}
	for i, t := range tokens {
		d.ids[i] = int64(t)
		d.positions[i] = int64(past + i)
	}
	total := past + s
	for i := range total {
		d.mask[i] = 1
	}
	outRows := s
	if d.prunedLogits {
		outRows = 1
	}
	if d.inPlaceKV {
		views, err := d.kvViews(d.prefillViews, slot, slot, 1)
		if err != nil {
			return nil, err
		}
		if err := d.runStep(views, views, 1, s, total, outRows); err != nil {
			return nil, err
		}
	} else {
		if slot < d.chainRows {
			d.chainRows = 0
		}
		d.rowLens[0] = past
		if _, err := d.runGathered(slot, 1, s, outRows, &d.prefillKV, false); err != nil {
			return nil, err
		}
	}
	return d.logitsRows((outRows-1)*d.vocab, d.vocab), nil
}

// decode implements decoder. With GroupQueryAttention row b's mask has
// lens[b]+1 ones: with it GroupQueryAttention writes the new K/V at index
// lens[b] of slot b and attends to indices 0..lens[b]; the mask is as wide
// as the longest row. Other attention goes through decodeGathered.
func (d *onnxDecoder) decode(tokens []int32, lens []int32) ([]float32, error) {
	b := len(tokens)
	if b == 0 || b > d.nSlots {
		return nil, fmt.Errorf("decode of %d rows: the cache has %d slots", b, d.nSlots)
	}
	width := 0
	for i, l := range lens {
		if int(l)+1 > d.maxLen {
			return nil, fmt.Errorf("decode row %d: %d cached tokens fill the cache", i, l)
		}
		width = max(width, int(l)+1)
	}
	for i, t := range tokens {
		d.ids[i] = int64(t)
		d.positions[i] = int64(lens[i])
	}
	if !d.inPlaceKV {
		if err := d.decodeGathered(lens); err != nil {
			return nil, err
		}
		return d.logitsRows(0, b*d.vocab), nil
	}
	views, err := d.kvViews(d.decodeViews, b-1, 0, b)
	if err != nil {
		return nil, err
	}
	for i, l := range lens {
		row := d.mask[i*width : (i+1)*width]
		ones := int(l) + 1
		for j := range row {
			row[j] = 0
			if j < ones {
				row[j] = 1
			}
		}
	}
	if err := d.runStep(views, views, b, 1, width, 1); err != nil {
		return nil, err
	}
	return d.logitsRows(0, b*d.vocab), nil
}

// kvScratch is a pasts and a presents buffer per KV buffer, for
// concatenating attention; each grows up to limit bytes.
type kvScratch struct {
	pasts, presents [][]byte
	limit           int
}

func newKVScratch(buffers, limit int) kvScratch {
	return kvScratch{pasts: make([][]byte, buffers), presents: make([][]byte, buffers), limit: limit}
}

// decodeGathered runs one decode step (ids and positions already set) on
// concatenating attention, chained to the last one when it ran the same
// rows, and leaves its presents in decodeKV.pasts for the next.
func (d *onnxDecoder) decodeGathered(lens []int32) error {
	b := len(lens)
	chained := d.chainRows == b
	for i, l := range lens {
		d.rowLens[i] = int(l)
		chained = chained && d.chainLens[i] == int(l)
	}
	d.chainRows = 0
	if chained {
		past := d.chainLen
		for i := range b {
			row := d.mask[i*(past+1) : (i+1)*(past+1)]
			copy(row, d.chainMask[i*past:(i+1)*past])
			row[past] = 1
		}
	}
	past, err := d.runGathered(0, b, 1, 1, &d.decodeKV, chained)
	if err != nil {
		return err
	}
	total := past + 1
	copy(d.chainMask, d.mask[:b*total])
	for i, l := range lens {
		d.chainLens[i] = int(l) + 1
	}
	d.chainRows, d.chainLen = b, total
	d.decodeKV.pasts, d.decodeKV.presents = d.decodeKV.presents, d.decodeKV.pasts
	return nil
}

// runGathered runs batch rows on concatenating attention and returns the
// pasts' length P: row b sits in slot first+b, holds rowLens[b] cached
// tokens and appends seq tokens (ids and positions already set). Unless
// chained (sc.pasts and the mask already hold the rows' K/V and valid
// indices), the pasts are the rows' K/V right-padded with zeros to P = max
// rowLens and the mask row is [1]*L_b + [0]*(P-L_b) + [1]*seq. The
// presents' indices P..P+seq-1 are the new K/V, copied back to each slot at
// L_b.
func (d *onnxDecoder) runGathered(first, batch, seq, outRows int, sc *kvScratch, chained bool) (int, error) {
	lens := d.rowLens[:batch]
	past := d.chainLen
	if !chained {
		past = slices.Max(lens)
	}
	total := past + seq
	rowBytes := d.headDim * d.elemSize
	headBytes := d.maxLen * rowBytes
	for i := range d.kv {
		sc.presents[i] = grow(sc.presents[i], batch*d.kvHeads*total*rowBytes, sc.limit)
	}
	if !chained {
		for b, l := range lens {
			row := d.mask[b*total : (b+1)*total]
			for j := range row {
				row[j] = 0
				if j < l || j >= past {
					row[j] = 1
				}
			}
		}
		// A tensor needs at least one element of data, even with no past.
		pastBytes := max(batch*d.kvHeads*past*rowBytes, d.elemSize)
		for i, buf := range d.kv {
			sc.pasts[i] = grow(sc.pasts[i], pastBytes, sc.limit)
			dst := sc.pasts[i]
			for b, l := range lens {
				for h := range d.kvHeads {
					src := (first+b)*d.slotBytes + h*headBytes
					at := (b*d.kvHeads + h) * past * rowBytes
					n := copy(dst[at:at+l*rowBytes], buf[src:src+l*rowBytes])
					clear(dst[at+n : at+past*rowBytes])
				}
			}
		}
	}
	made := d.kvTensors[:0]
	defer func() {
		for _, v := range made {
			v.Destroy()
		}
		clear(made)
	}()
	// made has room for every tensor, so the slices returned stay valid.
	tensors := func(bufs [][]byte, length int) ([]ort.Value, error) {
		shape := ort.NewShape(int64(batch), int64(d.kvHeads), int64(length), int64(d.headDim))
		n := max(batch*d.kvHeads*length*rowBytes, d.elemSize)
		start := len(made)
		for _, buf := range bufs {
			v, err := ort.NewCustomDataTensor(shape, buf[:n], d.elemType())
			if err != nil {
				return nil, fmt.Errorf("KV tensor: %w", err)
			}
			made = append(made, v)
		}
		return made[start:], nil
	}
	pasts, err := tensors(sc.pasts, past)
	if err != nil {
		return 0, err
	}
	presents, err := tensors(sc.presents, total)
	if err != nil {
		return 0, err
	}
	if err := d.runStep(pasts, presents, batch, seq, total, outRows); err != nil {
		return 0, err
	}
	for i, buf := range d.kv {
		src := sc.presents[i]
		for b, l := range lens {
			for h := range d.kvHeads {
				at := ((b*d.kvHeads+h)*total + past) * rowBytes
				dst := (first+b)*d.slotBytes + h*headBytes + l*rowBytes
				copy(buf[dst:dst+seq*rowBytes], src[at:at+seq*rowBytes])
			}
		}
	}
	return past, nil
}

// grow returns buf with at least n bytes. A buffer too small is replaced by
// one of twice its size (at most limit) or n, so pasts that grow by a token
// per step are reallocated only O(log maxLen) times.
func grow(buf []byte, n, limit int) []byte {
	if cap(buf) >= n {
		return buf[:cap(buf)]
	}
	return make([]byte, max(n, min(2*cap(buf), limit)))
}

func (d *onnxDecoder) elemType() ort.TensorElementDataType {
	if d.fp16 {
		return ort.TensorElementDataTypeFloat16
	}
	return ort.TensorElementDataTypeFloat
}

// runStep runs the model on the first batch×seq ids and positions and a
// batch×total mask, with the given KV tensors bound as pasts and presents
// (the same ones for GroupQueryAttention's shared buffer).
func (d *onnxDecoder) runStep(pasts, presents []ort.Value, batch, seq, total, outRows int) error {
	var made []ort.Value
	defer func() {
		for _, v := range made {
			v.Destroy()
		}
	}()
	ids, err := ort.NewTensor(ort.NewShape(int64(batch), int64(seq)), d.ids[:batch*seq])
	if err != nil {
		return err
	}
	made = append(made, ids)
	mask, err := ort.NewTensor(ort.NewShape(int64(batch), int64(total)), d.mask[:batch*total])
	if err != nil {
		return err
	}
	made = append(made, mask)
	in := append(d.inputs[:0], ids, mask)
	if d.positionIDs {
		pos, err := ort.NewTensor(ort.NewShape(int64(batch), int64(seq)), d.positions[:batch*seq])
		if err != nil {
			return err
		}
		made = append(made, pos)
		in = append(in, pos)
	}
	in = append(in, pasts...)
	logitsShape := ort.NewShape(int64(batch), int64(outRows), int64(d.vocab))
	n := batch * outRows * d.vocab
	var logits ort.Value
	if d.fp16 {
		logits, err = ort.NewCustomDataTensor(logitsShape, unsafe.Slice((*byte)(unsafe.Pointer(&d.logitsFP16[0])), 2*n), ort.TensorElementDataTypeFloat16)
	} else {
		logits, err = ort.NewTensor(logitsShape, d.logits[:n])
	}
	if err != nil {
		return err
	}
	made = append(made, logits)
	out := append(d.outputs[:0], logits)
	out = append(out, presents...)
	start := time.Now()
	err = d.session.RunWithOptions(in, out, d.runOpts)
	d.run += time.Since(start)
	if err != nil {
		return fmt.Errorf("%w: %v", engine.ErrRuntime, err)
	}
	return nil
}

// logitsRows returns n float32 logits from offset, converting float16 ones.
func (d *onnxDecoder) logitsRows(offset, n int) []float32 {
	out := d.logits[offset : offset+n]
	if d.fp16 {
		table := float16Table()
		for i, h := range d.logitsFP16[offset : offset+n] {
			out[i] = table[h]
		}
	}
	return out
}

// move implements decoder.
func (d *onnxDecoder) move(from, to, length int) {
	if from == to || length == 0 {
		return
	}
	d.chainRows = 0
	headBytes := d.maxLen * d.headDim * d.elemSize
	n := length * d.headDim * d.elemSize
	for _, buf := range d.kv {
		for h := range d.kvHeads {
			src := from*d.slotBytes + h*headBytes
			dst := to*d.slotBytes + h*headBytes
			copy(buf[dst:dst+n], buf[src:src+n])
		}
	}
}

// float16Table maps every half-precision bit pattern to its float32: a
// 256 KiB table turns converting a vocabulary of logits per row into one
// load per element.
var float16Table = sync.OnceValue(func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for h := range t {
		t[h] = float16ToFloat32(uint16(h))
	}
	return &t
})

// float16ToFloat32 converts an IEEE 754 half-precision value.
func float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		e := uint32(127 - 15 + 1)
		for frac&0x400 == 0 {
			frac <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (frac&0x3ff)<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}
