package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/modelserver/modelserver/internal/onnxgen"
)

// runGenPhi3 implements `modelserver gen-phi3`: it writes a random-weight
// model of the Phi-3 architecture in the onnxruntime-genai export layout,
// for tests and benchmarks of the LLM path without downloading Phi-3.
func runGenPhi3(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("modelserver gen-phi3", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory to write the model into (created if missing; required)")
	preset := fs.String("preset", "tiny", "model size: tiny (2 layers of 64, for tests) or mid (8 layers of 1024, about 160M parameters, for benchmarks)")
	precision := fs.String("precision", onnxgen.Phi3FP32, "weight format: fp32, int4 (MatMulNBits, block 32, as the CPU export) or fp16 (float16 weights, KV cache and logits, as the cuda-fp16 export)")
	attention := fs.String("attention", onnxgen.Phi3GQA, "graph style: gqa (GroupQueryAttention, shared KV buffer, the current export) or mha (MultiHeadAttention with position_ids, the April 2024 CPU export; as many KV heads as query heads)")
	seed := fs.Uint64("seed", 0, "selects the random weights")
	context := fs.Int("context", 0, "context length, the most tokens of a sequence (default: the preset's, 4096 tiny, 2048 mid)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("gen-phi3: unexpected argument %q", fs.Arg(0))
	}
	if *out == "" {
		return fmt.Errorf("gen-phi3: --out is required")
	}
	var cfg onnxgen.Phi3Config
	switch *preset {
	case "tiny":
		cfg = onnxgen.Phi3Tiny()
	case "mid":
		cfg = onnxgen.Phi3Mid()
	default:
		return fmt.Errorf("gen-phi3: --preset %q: want tiny or mid", *preset)
	}
	cfg.Precision, cfg.Seed, cfg.Attention = *precision, *seed, *attention
	if *attention == onnxgen.Phi3MHA {
		// MultiHeadAttention has no grouped KV heads; Phi-3-mini has 32 of each.
		cfg.KVHeads = cfg.Heads
	}
	if *context != 0 {
		cfg.ContextLength = *context
	}
	if err := onnxgen.WritePhi3Dir(*out, cfg); err != nil {
		return fmt.Errorf("gen-phi3: %w", err)
	}
	fmt.Fprintf(stdout, "wrote a %s %s %s Phi-3 model (seed %d, context %d) to %s\n", *preset, cfg.Precision, *attention, cfg.Seed, cfg.ContextLength, *out)
	return nil
}
