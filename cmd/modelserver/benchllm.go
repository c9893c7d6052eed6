package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/llm"
	"github.com/modelserver/modelserver/openai"
	"github.com/modelserver/modelserver/server"
)

// benchLLMFlags configure `modelserver bench-llm`.
type benchLLMFlags struct {
	model        string
	ortLib       string
	concurrency  []int
	tokens       int
	promptTokens int
	threads      int
	repeat       int
	api          bool
}

// runBenchLLM measures the generation engine (continuous batching) at
// several concurrencies next to a direct ONNX Runtime decode loop of the
// same model and batch, in the same process and run.
func runBenchLLM(args []string, stdout, stderr io.Writer) error {
	var f benchLLMFlags
	var conc string
	fs := flag.NewFlagSet("modelserver bench-llm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.model, "model", "", "onnxruntime-genai model directory (required; see gen-phi3)")
	fs.StringVar(&f.ortLib, "onnxruntime-lib", "", "path of libonnxruntime.so (default as for serving)")
	fs.StringVar(&conc, "concurrency", "1,4,16", "comma-separated numbers of concurrent sequences")
	fs.IntVar(&f.tokens, "tokens", 64, "tokens generated per sequence")
	fs.IntVar(&f.promptTokens, "prompt-tokens", 32, "prompt tokens per sequence")
	fs.IntVar(&f.threads, "intra-op-threads", 0, "ONNX Runtime threads per operator (default: one per core)")
	fs.IntVar(&f.repeat, "repeat", 3, "measurements per concurrency; the best is reported (machines shared with other work are noisy)")
	fs.BoolVar(&f.api, "api", false, "also measure the OpenAI API path (SSE /v1/completions over loopback HTTP through the server's middleware) next to the engine driven directly")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.model == "" {
		return errors.New("--model DIR is required")
	}
	if f.tokens < 3 || f.promptTokens < 1 || f.repeat < 1 {
		return errors.New("--tokens must be at least 3, --prompt-tokens and --repeat positive")
	}
	for _, c := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("--concurrency: %q is not a positive integer", c)
		}
		f.concurrency = append(f.concurrency, n)
	}
	libPath, err := ortLibraryPath(f.ortLib)
	if err != nil {
		return err
	}
	if err := engine.InitONNXRuntime(libPath); err != nil {
		return err
	}
	opts := llm.Options{
		MaxSequences: slices.Max(f.concurrency),
		MaxContext:   f.promptTokens + f.tokens,
		ONNX:         engine.ONNXOptions{IntraOpThreads: f.threads},
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	e, err := llm.Open(f.model, opts)
	if err != nil {
		return err
	}
	defer e.Close()
	// The first runs of a session allocate its memory; keep them out of the
	// measurements.
	if _, err := benchEngine(e, benchPrompts(opts.MaxSequences, f.promptTokens), 2); err != nil {
		return err
	}

	type row struct {
		concurrency int
		engine      engineResult
		direct      float64
	}
	var rows []row
	for _, c := range f.concurrency {
		prompts := benchPrompts(c, f.promptTokens)
		best := row{concurrency: c}
		for range f.repeat {
			r, err := benchEngine(e, prompts, f.tokens)
			if err != nil {
				return err
			}
			if r.aggregate > best.engine.aggregate {
				best.engine = r
			}
			d, err := llm.DirectDecode(f.model, llm.Options{MaxSequences: c, MaxContext: opts.MaxContext, ONNX: opts.ONNX}, prompts, f.tokens)
			if err != nil {
				return err
			}
			best.direct = max(best.direct, float64(d.Rows*d.Steps)/d.Decode.Seconds())
		}
		rows = append(rows, best)
	}
	// Speed-ups are relative to one sequence when measured, else to the
	// first concurrency.
	base := rows[0].engine.aggregate
	for _, r := range rows {
		if r.concurrency == 1 {
			base = r.engine.aggregate
		}
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "concurrency\tengine tok/s\tspeed-up\tTTFT p50 ms\tstep ms\tengine overhead\tengine decode tok/s\tdirect decode tok/s\tengine/direct\t\n")
	for _, r := range rows {
		e := r.engine
		fmt.Fprintf(w, "%d\t%.1f\t%.2fx\t%.1f\t%.2f\t%.1f%%\t%.1f\t%.1f\t%.2f\t\n", r.concurrency, e.aggregate, e.aggregate/base,
			ms(e.ttftP50), ms(e.step), 100*e.overhead, e.decode, r.direct, e.decode/r.direct)
	}
	fmt.Fprintf(w, "\n")
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "best of --repeat runs. engine tok/s: generated tokens / wall time, prefill included; speed-up: over one sequence; step ms: mean decode step; "+
		"engine overhead: share of decode step time outside ONNX Runtime; decode tok/s: tokens / decode step time; "+
		"direct: the same batched decode runs without the scheduler (llm.DirectDecode).\n")
	if f.api {
		return benchAPI(stdout, e, f)
	}
	return nil
}

// benchAPI compares the OpenAI API path, through the same middleware as
// serving, with the engine driven directly, alternating the two.
func benchAPI(stdout io.Writer, e *llm.Engine, f benchLLMFlags) error {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	api := openai.New(openai.Options{Logger: discard})
	model := openai.ModelFromEngine(e, "")
	api.SetModel(model)
	srv := server.New(server.Options{Logger: discard, Routes: api.Routes()})
	srv.SetReady(server.Model{Handler: api.PredictHandler()})
	results, err := openai.Bench(context.Background(), model, openai.BenchOptions{
		Concurrency: f.concurrency, PromptTokens: f.promptTokens, MaxTokens: f.tokens, Rounds: f.repeat, Handler: srv.Handler(),
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	engineTPS := map[int]float64{}
	for _, r := range results {
		fmt.Fprintln(stdout, r.String())
		if r.Path == "engine" {
			engineTPS[r.Concurrency] = r.TokensPerSecond
		} else if base := engineTPS[r.Concurrency]; base > 0 {
			fmt.Fprintf(stdout, "api/engine c=%d: %.2f\n", r.Concurrency, r.TokensPerSecond/base)
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchPrompts makes n distinct prompts of length tokens (ids inside the
// vocabulary of every Phi-3 tokenizer).
func benchPrompts(n, tokens int) [][]int32 {
	prompts := make([][]int32, n)
	for i := range prompts {
		p := make([]int32, tokens)
		p[0] = 1
		for j := 1; j < tokens; j++ {
			p[j] = int32(300 + (i*7919+j*104729)%30000)
		}
		prompts[i] = p
	}
	return prompts
}

type engineResult struct {
	aggregate float64       // generated tokens per second of wall time
	ttftP50   time.Duration // median time to first token
	step      time.Duration // mean decode step
	overhead  float64       // share of step time outside the runtime
	decode    float64       // tokens per second of decode step time
}

// benchEngine runs every prompt at once, greedy for tokens tokens each.
func benchEngine(e *llm.Engine, prompts [][]int32, tokens int) (engineResult, error) {
	before := e.Stats()
	start := time.Now()
	ttft := make([]time.Duration, len(prompts))
	errs := make([]error, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		s, err := e.Generate(context.Background(), llm.Request{Prompt: p, Params: llm.SamplingParams{MaxTokens: tokens, IgnoreEOS: true}})
		if err != nil {
			return engineResult{}, err
		}
		wg.Go(func() {
			for ev := range s.Events() {
				if ev.Finish != "" {
					ttft[i] = ev.Timing.FirstToken
					if ev.Finish != llm.FinishLength || ev.Usage.CompletionTokens != tokens {
						errs[i] = fmt.Errorf("sequence %d ended with %q after %d tokens: %v", i, ev.Finish, ev.Usage.CompletionTokens, ev.Err)
					}
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return engineResult{}, err
	}
	after := e.Stats()
	steps := after.DecodeSteps - before.DecodeSteps
	stepTime := after.StepTime - before.StepTime
	runTime := after.RunTime - before.RunTime
	slices.Sort(ttft)
	r := engineResult{
		aggregate: float64(len(prompts)*tokens) / wall.Seconds(),
		ttftP50:   ttft[len(ttft)/2],
	}
	if steps > 0 && stepTime > 0 {
		r.step = stepTime / time.Duration(steps)
		r.overhead = 1 - float64(runTime)/float64(stepTime)
		r.decode = float64(after.DecodeTokens-before.DecodeTokens) / stepTime.Seconds()
	}
	return r, nil
}
