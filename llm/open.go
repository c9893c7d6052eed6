package llm

import (
	"fmt"
	"path/filepath"

	"github.com/modelserver/modelserver/internal/onnxpb"
	"github.com/modelserver/modelserver/llm/chattemplate"
	"github.com/modelserver/modelserver/llm/tokenizer"
)

// modelFiles holds what Open reads besides the graph.
type modelFiles struct {
	tok      *tokenizer.Tokenizer
	template *chattemplate.Template
}

// Open loads the onnxruntime-genai export in dir (genai_config.json, the
// decoder .onnx with its external data, tokenizer.json and
// tokenizer_config.json), allocates the KV cache and starts the scheduler.
// ONNX Runtime must be initialised (engine.InitONNXRuntime). Errors about the
// directory's content wrap ErrModelLayout.
func Open(dir string, opts Options) (*Engine, error) {
	cfg, err := readGenAIConfig(dir)
	if err != nil {
		return nil, err
	}
	autoContext := opts.MaxContext <= 0
	opts = opts.withDefaults(cfg.Model.ContextLength)
	d := cfg.Model.Decoder
	graph, err := readGraphIO(filepath.Join(dir, d.Filename))
	if err != nil {
		return nil, err
	}
	// The cache holds the logits' element type (newONNXDecoder checks the
	// KV tensors match it). Without GroupQueryAttention the decode batch's
	// pasts and presents take up to twice the cache, and a prefill's two
	// slots more.
	elemSize := 4
	if graph.outputs[d.Outputs.Logits].elem == onnxpb.TensorProto_FLOAT16 {
		elemSize = 2
	}
	tokenBytes := kvBytes(d.NumHiddenLayers, 1, d.NumKeyValueHeads, 1, d.HeadSize, elemSize)
	perSequenceSlots, fixedSlots := int64(1), int64(0)
	if !graph.inPlaceKV {
		perSequenceSlots, fixedSlots = 3, 2
	}
	if autoContext && opts.MaxSequences <= 0 {
		// A big model's full context may not fit the budget even once (a
		// float32 MultiHeadAttention export of Phi-3 needs 16 GB for one
		// 4k sequence): shorten the default context rather than fail.
		fit := int(opts.MaxKVCacheBytes / ((perSequenceSlots + fixedSlots) * tokenBytes))
		if fit >= 1 && fit < opts.MaxContext {
			opts.Logger.Warn("the model's context does not fit the KV cache budget; serving a shorter context (raise llm.max_kv_cache_bytes or set llm.max_context)",
				"context_length", opts.MaxContext, "max_context", fit, "max_kv_cache_mib", opts.MaxKVCacheBytes>>20)
			opts.MaxContext = fit
			opts.PrefillChunk = min(opts.PrefillChunk, fit)
		}
	}
	slotBytes := tokenBytes * int64(opts.MaxContext)
	perSequence, fixed := perSequenceSlots*slotBytes, fixedSlots*slotBytes
	if opts.MaxSequences <= 0 {
		opts.MaxSequences = int(min(DefaultMaxSequences, (opts.MaxKVCacheBytes-fixed)/max(perSequence, 1)))
		if opts.MaxSequences < 1 {
			return nil, fmt.Errorf("llm: one sequence of %d tokens needs a %d MiB KV cache, above the %d MiB limit; lower max_context",
				opts.MaxContext, (perSequence+fixed)>>20, opts.MaxKVCacheBytes>>20)
		}
	}
	kvTotal := perSequence*int64(opts.MaxSequences) + fixed
	if kvTotal > opts.MaxKVCacheBytes {
		return nil, fmt.Errorf("llm: a KV cache of %d sequences × %d tokens takes %d MiB, above the %d MiB limit; lower max_sequences or max_context",
			opts.MaxSequences, opts.MaxContext, kvTotal>>20, opts.MaxKVCacheBytes>>20)
	}
	tok, err := tokenizer.LoadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrModelLayout, err)
	}
	source := tok.Config().ChatTemplate
	if source == "" {
		source = chattemplate.Phi3Mini
	}
	template, err := chattemplate.Compile(source)
	if err != nil {
		return nil, fmt.Errorf("%w: chat template: %v", ErrModelLayout, err)
	}
	dec, err := newONNXDecoder(dir, cfg, graph, decoderOptions{
		slots: opts.MaxSequences, maxLen: opts.MaxContext, maxPrefill: opts.PrefillChunk, onnx: opts.ONNX,
	})
	if err != nil {
		return nil, err
	}
	if tok.VocabSize() > dec.vocabSize() {
		dec.close()
		return nil, fmt.Errorf("%w: the tokenizer knows %d ids, the model has %d logits", ErrModelLayout, tok.VocabSize(), dec.vocabSize())
	}
	eos := cfg.eos
	if len(eos) == 0 {
		if id, ok := tok.EOS(); ok {
			eos = []int32{id}
		}
	}
	name := filepath.Base(filepath.Clean(dir))
	opts.Logger.Info("llm engine ready", "model", name, "layers", d.NumHiddenLayers, "kv_heads", d.NumKeyValueHeads,
		"head_size", d.HeadSize, "vocab", dec.vocabSize(), "fp16", dec.fp16, "in_place_kv", dec.inPlaceKV, "max_sequences", opts.MaxSequences,
		"max_context", opts.MaxContext, "prefill_chunk", opts.PrefillChunk, "queue_size", opts.QueueSize,
		"kv_cache_mib", kvTotal>>20)
	sched := newScheduler(dec, tokenText{tok}, schedulerConfig{
		contextLength: opts.MaxContext,
		queueSize:     opts.QueueSize,
		prefillChunk:  opts.PrefillChunk,
		eos:           eos,
	})
	return &Engine{
		sched:  sched,
		dec:    dec,
		model:  modelFiles{tok: tok, template: template},
		name:   name,
		ctxLen: opts.MaxContext,
	}, nil
}

// Tokenizer returns the model's tokenizer.
func (e *Engine) Tokenizer() *tokenizer.Tokenizer { return e.model.tok }

// ChatTemplate returns the model's compiled chat template: the one in
// tokenizer_config.json, else Phi-3-mini's.
func (e *Engine) ChatTemplate() *chattemplate.Template { return e.model.template }

// tokenText adapts the tokenizer to the scheduler: output text skips
// special tokens.
type tokenText struct{ tok *tokenizer.Tokenizer }

func (t tokenText) newStream() tokenStream    { return t.tok.NewStreamDecoder(true) }
func (t tokenText) tokenText(id int32) string { return t.tok.TokenText(id) }
