package llm

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// BenchmarkEngine generates 32 greedy tokens for each of n concurrent
// sequences on the tiny model per iteration, and reports aggregate tokens
// per second and the engine's share of decode step time (everything but the
// ONNX Runtime call).
func BenchmarkEngine(b *testing.B) {
	for _, style := range tinyStyles {
		for _, n := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("tiny-%s/seqs=%d", style.name, n), func(b *testing.B) { benchmarkEngine(b, style, n) })
		}
	}
}

func benchmarkEngine(b *testing.B, style tinyStyle, n int) {
	dir := tinyModelDir(b, style)
	e, err := Open(dir, Options{MaxSequences: n, MaxContext: 128, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	const tokens = 32
	prompts := make([][]int32, n)
	for i := range prompts {
		prompts[i] = prompt(16, int32(i))
	}
	b.ReportAllocs()
	before := e.Stats()
	start := time.Now()
	for b.Loop() {
		var wg sync.WaitGroup
		for _, p := range prompts {
			s, err := e.Generate(context.Background(), Request{Prompt: p, Params: SamplingParams{MaxTokens: tokens, IgnoreEOS: true}})
			if err != nil {
				b.Fatal(err)
			}
			wg.Go(func() {
				for range s.Events() {
				}
			})
		}
		wg.Wait()
	}
	elapsed := time.Since(start)
	after := e.Stats()
	b.ReportMetric(float64(b.N*n*tokens)/elapsed.Seconds(), "tok/s")
	if st := after.StepTime - before.StepTime; st > 0 {
		b.ReportMetric(100*(1-float64(after.RunTime-before.RunTime)/float64(st)), "overhead%")
	}
}

// BenchmarkDecodeStepOverhead runs the scheduler over a model that costs
// nothing (fixed logits of Phi-3's vocabulary size), so the time per decode
// step is the engine's own work for 16 rows: sampling, stop checks, events.
func BenchmarkDecodeStepOverhead(b *testing.B) {
	const rows, vocab, tokens = 16, 32064, 64
	dec := newFakeDecoder(vocab, rows, 128)
	dec.static = true
	for i := range dec.logits {
		dec.logits[i] = float32(i*7919%vocab) / vocab
	}
	e := &Engine{sched: newScheduler(dec, &fakeText{}, schedulerConfig{contextLength: 128, queueSize: rows, prefillChunk: 512, eos: []int32{fakeEOS}})}
	defer e.Close()
	b.ReportAllocs()
	before := e.Stats()
	for b.Loop() {
		var wg sync.WaitGroup
		for i := range rows {
			s, err := e.Generate(context.Background(), Request{Prompt: []int32{int32(i + 1)}, Params: SamplingParams{MaxTokens: tokens, IgnoreEOS: true}})
			if err != nil {
				b.Fatal(err)
			}
			wg.Go(func() {
				for range s.Events() {
				}
			})
		}
		wg.Wait()
	}
	after := e.Stats()
	if steps := after.DecodeSteps - before.DecodeSteps; steps > 0 {
		b.ReportMetric(float64(after.StepTime-before.StepTime)/float64(steps)/1e3, "µs/step")
		b.ReportMetric(float64(after.DecodeTokens-before.DecodeTokens)/float64(steps), "rows/step")
	}
}
