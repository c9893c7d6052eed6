package llm

import (
	"fmt"
	"path/filepath"
	"time"
)

// DirectResult is what DirectDecode measured.
type DirectResult struct {
	Rows, Steps int
	Prefill     time.Duration // all rows' prompts, one run each
	Decode      time.Duration // the timed batched decode runs, with argmax
}

// directWarmupSteps are decode runs DirectDecode does not time: the first
// runs of a new session allocate its memory.
const directWarmupSteps = 2

// DirectDecode is the benchmark baseline for the engine: it runs the model
// in dir without the scheduler, in the same way the engine does: prefill
// each prompt in its own slot, then steps greedy decode runs of all rows at
// once, the first directWarmupSteps of them untimed. opts sizes the cache as
// Open does (MaxContext must hold the longest prompt plus steps).
func DirectDecode(dir string, opts Options, prompts [][]int32, steps int) (DirectResult, error) {
	if len(prompts) == 0 || steps <= directWarmupSteps {
		return DirectResult{}, fmt.Errorf("llm: DirectDecode needs prompts and more than %d steps", directWarmupSteps)
	}
	cfg, err := readGenAIConfig(dir)
	if err != nil {
		return DirectResult{}, err
	}
	opts = opts.withDefaults(cfg.Model.ContextLength)
	longest := 0
	for _, p := range prompts {
		longest = max(longest, len(p))
	}
	if longest+steps > opts.MaxContext {
		return DirectResult{}, fmt.Errorf("%w: %d prompt tokens + %d steps > %d", ErrContextLength, longest, steps, opts.MaxContext)
	}
	graph, err := readGraphIO(filepath.Join(dir, cfg.Model.Decoder.Filename))
	if err != nil {
		return DirectResult{}, err
	}
	dec, err := newONNXDecoder(dir, cfg, graph, decoderOptions{
		slots: len(prompts), maxLen: opts.MaxContext, maxPrefill: longest, onnx: opts.ONNX,
	})
	if err != nil {
		return DirectResult{}, err
	}
	defer dec.close()
	res := DirectResult{Rows: len(prompts), Steps: steps - directWarmupSteps}
	tokens := make([]int32, len(prompts))
	lens := make([]int32, len(prompts))
	start := time.Now()
	for i, p := range prompts {
		logits, err := dec.prefill(i, p, 0)
		if err != nil {
			return res, err
		}
		tokens[i], lens[i] = argmax(logits), int32(len(p))
	}
	res.Prefill = time.Since(start)
	vocab := dec.vocabSize()
	for step := range steps {
		if step == directWarmupSteps {
			start = time.Now()
		}
		logits, err := dec.decode(tokens, lens)
		if err != nil {
			return res, err
		}
		for i := range tokens {
			tokens[i] = argmax(logits[i*vocab : (i+1)*vocab])
			lens[i]++
		}
	}
	res.Decode = time.Since(start)
	return res, nil
}
