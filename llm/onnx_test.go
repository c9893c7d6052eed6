package llm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/onnxgen"
	"github.com/modelserver/modelserver/internal/testort"
	"github.com/modelserver/modelserver/llm/chattemplate"
)

// tinyStyle is one export style of the tiny random Phi-3.
type tinyStyle struct {
	name   string
	config onnxgen.Phi3Config
	// tolerance bounds the logit differences between two ways of computing
	// the same sequence (cached or recomputed, batched or alone), which
	// round differently.
	tolerance float64
}

// Logit tolerances: float32 computation differs by float32 rounding, about
// 1e-6 of the logits' scale (standard deviation 2) per operation. Float16
// rounds each intermediate to 2⁻¹¹ ≈ 4.9e-4 relative, and logits near 8
// come out of about 15 rounded intermediates, so two float16 computations
// of one logit may differ by up to 0.06 (onnxgen's fp16 test measures about
// 0.007 against a float64 reference). Either is far below the change a
// wrong cache entry or position makes, about the logits' standard
// deviation.
const (
	fp32Tolerance = 1e-4
	fp16Tolerance = 0.06
)

// gqaStyle is the current export (GroupQueryAttention, shared KV buffer);
// mhaStyle the April 2024 CPU one (MultiHeadAttention with position_ids,
// fresh presents), which needs as many KV heads as query heads. fp16Style
// is gqaStyle in the cuda-fp16 export's format (float16 weights, KV cache
// and logits), and fp16MHAStyle mhaStyle in float16, for the engine's
// float16 pasts and presents outside the shared buffer.
var (
	gqaStyle     = tinyStyle{"gqa", onnxgen.Phi3Tiny(), fp32Tolerance}
	mhaStyle     = tinyStyle{"mha", tinyMHA(onnxgen.Phi3FP32), fp32Tolerance}
	fp16Style    = tinyStyle{"fp16", tinyFP16(), fp16Tolerance}
	fp16MHAStyle = tinyStyle{"fp16-mha", tinyMHA(onnxgen.Phi3FP16), fp16Tolerance}
	tinyStyles   = []tinyStyle{gqaStyle, mhaStyle, fp16Style, fp16MHAStyle}
)

func tinyMHA(precision string) onnxgen.Phi3Config {
	c := onnxgen.Phi3Tiny()
	c.KVHeads, c.Attention, c.Precision = c.Heads, onnxgen.Phi3MHA, precision
	return c
}

func tinyFP16() onnxgen.Phi3Config {
	c := onnxgen.Phi3Tiny()
	c.Precision = onnxgen.Phi3FP16
	return c
}

// tinyModels holds each style's model, written once per test binary.
var tinyModels struct {
	sync.Mutex
	dirs map[string]string
}

// tempDirs are removed by TestMain.
var tempDirs []string

// tinyModelDir returns the directory of style's tiny model, writing it on
// first use, after initialising ONNX Runtime (or skipping).
func tinyModelDir(tb testing.TB, style tinyStyle) string {
	tb.Helper()
	if err := engine.InitONNXRuntime(testort.Library(tb)); err != nil {
		testort.Unusable(tb, err)
	}
	tinyModels.Lock()
	defer tinyModels.Unlock()
	if dir, ok := tinyModels.dirs[style.name]; ok {
		return dir
	}
	dir, err := os.MkdirTemp("", "llm-phi3-tiny-"+style.name+"-")
	if err != nil {
		tb.Fatal(err)
	}
	tempDirs = append(tempDirs, dir)
	if err := onnxgen.WritePhi3Dir(dir, style.config); err != nil {
		tb.Fatal(err)
	}
	if tinyModels.dirs == nil {
		tinyModels.dirs = make(map[string]string)
	}
	tinyModels.dirs[style.name] = dir
	return dir
}

// forEachStyle runs test as a subtest per export style.
func forEachStyle(t *testing.T, test func(t *testing.T, style tinyStyle)) {
	for _, style := range tinyStyles {
		t.Run(style.name, func(t *testing.T) { test(t, style) })
	}
}

func openTiny(t *testing.T, style tinyStyle, opts Options) *Engine {
	t.Helper()
	dir := tinyModelDir(t, style)
	if opts.MaxContext == 0 {
		opts.MaxContext = 256
	}
	opts.ONNX.IntraOpThreads = 1
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

func newTinyDecoder(t *testing.T, style tinyStyle, slots, maxLen, maxPrefill int) *onnxDecoder {
	t.Helper()
	dir := tinyModelDir(t, style)
	cfg, err := readGenAIConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	graph, err := readGraphIO(filepath.Join(dir, cfg.Model.Decoder.Filename))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := newONNXDecoder(dir, cfg, graph, decoderOptions{slots: slots, maxLen: maxLen, maxPrefill: maxPrefill, onnx: engine.ONNXOptions{IntraOpThreads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if want := style.config.Attention != onnxgen.Phi3MHA; dec.inPlaceKV != want {
		t.Fatalf("%s model: in-place KV %v, want %v", style.name, dec.inPlaceKV, want)
	}
	if want := style.config.Precision == onnxgen.Phi3FP16; dec.fp16 != want {
		t.Fatalf("%s model: float16 KV and logits %v, want %v", style.name, dec.fp16, want)
	}
	t.Cleanup(func() { dec.close() })
	return dec
}

func maxAbsDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// TestIncrementalEqualsRecompute checks that the logits after each token of
// cached decoding (a chunked prefill, then single-token steps, in a batch of
// rows of other lengths) equal a full recompute of the same prefix.
func TestIncrementalEqualsRecompute(t *testing.T) {
	forEachStyle(t, func(t *testing.T, style tinyStyle) {
		const vocab = 32064
		tokens := make([]int32, 40)
		for i := range tokens {
			tokens[i] = int32(100 + i*37%5000)
		}
		dec := newTinyDecoder(t, style, 3, 64, 64)
		full := newTinyDecoder(t, style, 1, 64, 64)
		// Slots 1 and 2 hold other sequences, one shorter and one longer, so
		// the rows are ragged and the MHA layout pads slot 0's past.
		others := [][]int32{{5, 6, 7}, {9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22}}
		for i, o := range others {
			if _, err := dec.prefill(i+1, o, 0); err != nil {
				t.Fatal(err)
			}
		}
		// Slot 0: prefill 10 tokens in chunks of 4, 4 and 2.
		var incremental []float32
		for start := 0; start < 10; start += 4 {
			end := min(start+4, 10)
			logits, err := dec.prefill(0, tokens[start:end], start)
			if err != nil {
				t.Fatal(err)
			}
			incremental = slices.Clone(logits)
		}
		lens := []int32{10, int32(len(others[0])), int32(len(others[1]))}
		for n := 10; ; n++ {
			want, err := full.prefill(0, tokens[:n], 0)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxAbsDiff(incremental, want); d > style.tolerance {
				t.Fatalf("after %d tokens: cached logits differ from a full recompute by %g", n, d)
			}
			if n == len(tokens) {
				break
			}
			logits, err := dec.decode([]int32{tokens[n], 20, 21}, lens)
			if err != nil {
				t.Fatal(err)
			}
			incremental = slices.Clone(logits[:vocab])
			for i := range lens {
				lens[i]++
			}
		}
	})
}

// TestStylesAgree runs the same weights in both export styles (the GQA
// model with as many KV heads as the MHA one) through the same ragged
// prefills and batched decode steps and compares every logit.
func TestStylesAgree(t *testing.T) {
	gqa4 := tinyStyle{"gqa-4kv", mhaStyle.config, fp32Tolerance}
	gqa4.config.Attention = onnxgen.Phi3GQA
	decs := []*onnxDecoder{newTinyDecoder(t, gqa4, 3, 32, 32), newTinyDecoder(t, mhaStyle, 3, 32, 32)}
	prompts := [][]int32{{1, 450, 4996}, {1, 17354, 1701, 975, 278, 17366, 11203}, {1, 29889}}
	var logits [2][]float32
	for b, p := range prompts {
		for i, dec := range decs {
			got, err := dec.prefill(b, p, 0)
			if err != nil {
				t.Fatal(err)
			}
			logits[i] = slices.Clone(got)
		}
		if d := maxAbsDiff(logits[0], logits[1]); d > 1e-4 {
			t.Errorf("prefill %d: the styles' logits differ by %g", b, d)
		}
	}
	tokens := []int32{100, 200, 300}
	lens := []int32{3, 7, 2}
	for step := range 4 {
		for i, dec := range decs {
			got, err := dec.decode(tokens, lens)
			if err != nil {
				t.Fatal(err)
			}
			logits[i] = slices.Clone(got)
		}
		if d := maxAbsDiff(logits[0], logits[1]); d > 1e-4 {
			t.Errorf("decode step %d: the styles' logits differ by %g", step, d)
		}
		for b := range lens {
			tokens[b] += 7
			lens[b]++
		}
	}
}

// TestFloat16AgreesWithFloat32 runs the fp16 model and the fp32 one of the
// same seed, whose weights are the fp16 ones before rounding, through the
// same ragged prefills and batched decode steps in each attention style.
// The consistency tests cannot see a float16 path that scales or shifts
// every logit alike (a wrong conversion); this one can. Rounding the
// weights to float16 (relative error up to 2⁻¹¹) changes each logit by
// about 2⁻¹¹·sqrt(K) of its scale per MatMul, which with the activations'
// rounding stays within fp16Tolerance (measured: about 0.011).
func TestFloat16AgreesWithFloat32(t *testing.T) {
	for _, pair := range [][2]tinyStyle{{gqaStyle, fp16Style}, {mhaStyle, fp16MHAStyle}} {
		t.Run(pair[1].name, func(t *testing.T) {
			decs := []*onnxDecoder{newTinyDecoder(t, pair[0], 3, 32, 32), newTinyDecoder(t, pair[1], 3, 32, 32)}
			prompts := [][]int32{{1, 450, 4996}, {1, 17354, 1701, 975, 278, 17366, 11203}, {1, 29889}}
			var logits [2][]float32
			var worst float64
			compare := func(what string) {
				t.Helper()
				d := maxAbsDiff(logits[0], logits[1])
				worst = max(worst, d)
				if d > fp16Tolerance {
					t.Errorf("%s: float16 and float32 logits differ by %g", what, d)
				}
			}
			for b, p := range prompts {
				for i, dec := range decs {
					got, err := dec.prefill(b, p, 0)
					if err != nil {
						t.Fatal(err)
					}
					logits[i] = slices.Clone(got)
				}
				compare(fmt.Sprintf("prefill %d", b))
			}
			tokens := []int32{100, 200, 300}
			lens := []int32{3, 7, 2}
			for step := range 4 {
				for i, dec := range decs {
					got, err := dec.decode(tokens, lens)
					if err != nil {
						t.Fatal(err)
					}
					logits[i] = slices.Clone(got)
				}
				compare(fmt.Sprintf("decode step %d", step))
				for b := range lens {
					tokens[b] += 7
					lens[b]++
				}
			}
			t.Logf("largest difference %g", worst)
		})
	}
}

// TestDecodeAfterSlotsChange decodes a batch over several steps (which
// the MHA layout chains, reusing the last run's presents), replaces one
// row's sequence by a prefill of the same length, then moves a row, and
// checks every row's logits against a recompute of its sequence alone.
func TestDecodeAfterSlotsChange(t *testing.T) {
	forEachStyle(t, func(t *testing.T, style tinyStyle) {
		dec := newTinyDecoder(t, style, 2, 32, 32)
		full := newTinyDecoder(t, style, 1, 32, 32)
		seqs := [][]int32{{1, 450, 4996, 17354}, {1, 1701, 975}}
		check := func(what string, logits []float32) {
			t.Helper()
			v := dec.vocabSize()
			for b, seq := range seqs[:len(logits)/v] {
				want, err := full.prefill(0, seq, 0)
				if err != nil {
					t.Fatal(err)
				}
				if d := maxAbsDiff(logits[b*v:(b+1)*v], want); d > style.tolerance {
					t.Errorf("%s, row %d: logits differ from a recompute by %g", what, b, d)
				}
			}
		}
		step := func(what string, rows int) {
			t.Helper()
			tokens, lens := make([]int32, rows), make([]int32, rows)
			for b := range rows {
				tokens[b], lens[b] = int32(300+10*len(seqs[b])+b), int32(len(seqs[b]))
				seqs[b] = append(seqs[b], tokens[b])
			}
			logits, err := dec.decode(tokens, lens)
			if err != nil {
				t.Fatal(err)
			}
			check(what, slices.Clone(logits))
		}
		for b, seq := range seqs {
			if _, err := dec.prefill(b, seq, 0); err != nil {
				t.Fatal(err)
			}
		}
		for range 3 {
			step("steady batch", 2)
		}
		// Slot 1 gets a new sequence as long as its old one.
		seqs[1] = []int32{1, 29889, 29892, 920, 526, 366}
		if _, err := dec.prefill(1, seqs[1], 0); err != nil {
			t.Fatal(err)
		}
		step("after a new sequence in slot 1", 2)
		step("steady again", 2)
		dec.move(1, 0, len(seqs[1]))
		seqs = seqs[1:]
		step("after moving slot 1 to 0", 1)
		step("one row", 1)
	})
}

// TestMoveKeepsCache moves a sequence's cache to another slot and checks
// its next logits are unchanged.
func TestMoveKeepsCache(t *testing.T) {
	forEachStyle(t, func(t *testing.T, style tinyStyle) {
		dec := newTinyDecoder(t, style, 3, 32, 32)
		prompt := []int32{1, 450, 4996, 17354, 1701}
		if _, err := dec.prefill(2, prompt, 0); err != nil {
			t.Fatal(err)
		}
		dec.move(2, 0, len(prompt))
		got, err := dec.decode([]int32{29889}, []int32{int32(len(prompt))})
		if err != nil {
			t.Fatal(err)
		}
		got = slices.Clone(got)
		want, err := dec.prefill(1, append(slices.Clone(prompt), 29889), 0)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(got, want); d > style.tolerance {
			t.Errorf("logits after a move differ by %g", d)
		}
	})
}

// TestEngineBatchedEqualsAlone decodes greedy sequences that join and leave
// a continuous batch and checks each equals the sequence decoded alone.
func TestEngineBatchedEqualsAlone(t *testing.T) {
	forEachStyle(t, func(t *testing.T, style tinyStyle) {
		e := openTiny(t, style, Options{MaxSequences: 4, PrefillChunk: 16})
		tok := e.Tokenizer()
		texts := []string{
			"Hello", "The quick brown fox jumps over the lazy dog", "1 2 3",
			"Once upon a time, in a land far away, there lived a king who had three daughters.",
			"What is the capital of France?", "a", "Go is a programming language", "ONNX Runtime",
		}
		reqs := make([]Request, len(texts))
		for i, text := range texts {
			reqs[i] = Request{Prompt: tok.Encode(text, true), Params: SamplingParams{MaxTokens: 6 + 5*(i%3), IgnoreEOS: true}}
		}
		alone := make([]outcome, len(reqs))
		for i, req := range reqs {
			alone[i] = generate(t, e, context.Background(), req)
			if alone[i].finish != FinishLength || len(alone[i].tokens) != req.Params.MaxTokens {
				t.Fatalf("alone %d: %+v", i, alone[i])
			}
		}
		batched := generateAll(t, e, reqs)
		for i := range reqs {
			if !slices.Equal(batched[i].tokens, alone[i].tokens) || batched[i].text != alone[i].text {
				t.Errorf("request %d: batched %v %q, alone %v %q", i, batched[i].tokens, batched[i].text, alone[i].tokens, alone[i].text)
			}
			if want := tok.Decode(alone[i].tokens, true); alone[i].text != want {
				t.Errorf("request %d: streamed text %q, Decode gives %q", i, alone[i].text, want)
			}
		}
		waitFor(t, "idle", func() bool { st := e.Stats(); return st.Running == 0 && st.Waiting == 0 })
		if st := e.Stats(); st.DecodeSteps == 0 || st.DecodeTokens < st.DecodeSteps || st.RunTime <= 0 || st.RunTime > st.StepTime {
			t.Errorf("stats after the run: %+v", st)
		}
	})
}

// TestEngineSeed samples with a seed alone and inside a batch.
func TestEngineSeed(t *testing.T) {
	forEachStyle(t, func(t *testing.T, style tinyStyle) {
		e := openTiny(t, style, Options{MaxSequences: 4})
		seed := uint64(7)
		req := Request{Prompt: e.Tokenizer().Encode("Tell me a story", true),
			Params: SamplingParams{Temperature: 0.9, TopP: 0.9, TopK: 50, Seed: &seed, MaxTokens: 12, IgnoreEOS: true}}
		alone := generate(t, e, context.Background(), req)
		again := generate(t, e, context.Background(), req)
		if !slices.Equal(alone.tokens, again.tokens) {
			t.Fatalf("same seed, different tokens: %v and %v", alone.tokens, again.tokens)
		}
		var wg sync.WaitGroup
		results := make([]outcome, 3)
		for i := range results {
			r := req
			if i > 0 {
				r = Request{Prompt: e.Tokenizer().Encode(strings.Repeat("noise ", 3*i), true), Params: SamplingParams{Temperature: 1, MaxTokens: 5 * i, IgnoreEOS: true}}
			}
			s, err := e.Generate(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() { results[i] = summarise(t, collect(t, s)) })
		}
		wg.Wait()
		if !slices.Equal(results[0].tokens, alone.tokens) {
			t.Errorf("seeded tokens in a batch %v, alone %v", results[0].tokens, alone.tokens)
		}
	})
}

// TestEngineChat renders a chat prompt with the model's template and runs
// it to a stop, checking the accounting of the final event.
func TestEngineChat(t *testing.T) {
	forEachStyle(t, func(t *testing.T, style tinyStyle) {
		e := openTiny(t, style, Options{MaxSequences: 2})
		if e.ModelName() == "" || e.ContextLength() != 256 {
			t.Errorf("model %q context %d", e.ModelName(), e.ContextLength())
		}
		text, err := e.ChatTemplate().Render(chattemplate.Input{
			Messages:            []chattemplate.Message{{Role: "user", Content: "Hi there"}},
			AddGenerationPrompt: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(text, "<|user|>\nHi there<|end|>\n<|assistant|>") {
			t.Fatalf("rendered %q", text)
		}
		prompt := e.Tokenizer().Encode(text, true)
		s, err := e.Generate(context.Background(), Request{Prompt: prompt, Params: SamplingParams{MaxTokens: 5}})
		if err != nil {
			t.Fatal(err)
		}
		events := collect(t, s)
		last := events[len(events)-1]
		if last.Usage.PromptTokens != len(prompt) || last.Usage.CompletionTokens == 0 || last.Usage.CompletionTokens > 5 {
			t.Errorf("usage %+v", last.Usage)
		}
		if last.Timing.FirstToken <= 0 || last.Timing.Total < last.Timing.FirstToken || last.Timing.Queued > last.Timing.FirstToken {
			t.Errorf("timing %+v", last.Timing)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	good := tinyModelDir(t, gqaStyle)
	tests := []struct {
		name  string
		edit  func(dir string) error
		opts  Options
		want  error
		match string
	}{
		{"no genai config", func(dir string) error { return os.Remove(filepath.Join(dir, genaiConfigFile)) }, Options{}, ErrModelLayout, "genai_config.json"},
		{"wrong kv heads", func(dir string) error {
			return rewrite(filepath.Join(dir, genaiConfigFile), `"num_key_value_heads": 2`, `"num_key_value_heads": 4`)
		}, Options{}, ErrModelLayout, "kv heads"},
		{"more layers than the graph", func(dir string) error {
			return rewrite(filepath.Join(dir, genaiConfigFile), `"num_hidden_layers": 2`, `"num_hidden_layers": 3`)
		}, Options{}, ErrModelLayout, "past_key_values.2.key"},
		{"renamed input", func(dir string) error {
			return rewrite(filepath.Join(dir, genaiConfigFile), `"input_ids": "input_ids"`, `"input_ids": "tokens"`)
		}, Options{}, ErrModelLayout, `"tokens"`},
		{"KV cache too large", func(string) error { return nil }, Options{MaxSequences: 1000, MaxKVCacheBytes: 1 << 20}, nil, "lower max_sequences"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, name := range []string{"model.onnx", "model.onnx.data", genaiConfigFile, "tokenizer.json", "tokenizer_config.json"} {
				if err := os.Symlink(filepath.Join(good, name), filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			if err := tt.edit(dir); err != nil {
				t.Fatal(err)
			}
			e, err := Open(dir, tt.opts)
			if err == nil {
				e.Close()
				t.Fatal("Open succeeded")
			}
			if (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.match) {
				t.Errorf("Open = %v, want %v containing %q", err, tt.want, tt.match)
			}
		})
	}
}

// rewrite replaces old by new in the file at path, which may be a link.
func rewrite(path, old, new string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !strings.Contains(string(data), old) {
		return errors.New("rewrite: " + old + " not found")
	}
	os.Remove(path)
	return os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o644)
}

// TestEngineCancel cancels running and queued sequences on the real model
// and checks every stream ends cancelled and the slots are freed.
func TestEngineCancel(t *testing.T) {
	forEachStyle(t, func(t *testing.T, style tinyStyle) {
		e := openTiny(t, style, Options{MaxSequences: 2})
		ctx, cancel := context.WithCancel(context.Background())
		var streams []*Stream
		for i := range 4 {
			s, err := e.Generate(ctx, Request{Prompt: prompt(8, int32(i)), Params: SamplingParams{IgnoreEOS: true}})
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, s)
		}
		<-streams[0].Events() // the first sequence is running
		cancel()
		for i, s := range streams {
			events := collect(t, s)
			if last := events[len(events)-1]; last.Finish != FinishCancelled || !errors.Is(last.Err, context.Canceled) {
				t.Errorf("stream %d: last event %+v", i, last)
			}
		}
		waitFor(t, "idle", func() bool { st := e.Stats(); return st.Running == 0 && st.Waiting == 0 && st.SlotsUsed == 0 })
		got := generate(t, e, context.Background(), Request{Prompt: prompt(4, 1), Params: SamplingParams{MaxTokens: 3}})
		if len(got.tokens) == 0 || got.err != nil {
			t.Errorf("after cancelling: %+v", got)
		}
	})
}

// TestEngineCloseWhileRunning closes the engine under load.
func TestEngineCloseWhileRunning(t *testing.T) {
	forEachStyle(t, func(t *testing.T, style tinyStyle) {
		dir := tinyModelDir(t, style)
		e, err := Open(dir, Options{MaxSequences: 2, MaxContext: 256, ONNX: engine.ONNXOptions{IntraOpThreads: 1}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		var streams []*Stream
		for i := range 4 {
			s, err := e.Generate(context.Background(), Request{Prompt: prompt(8, int32(i)), Params: SamplingParams{IgnoreEOS: true}})
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, s)
		}
		<-streams[0].Events()
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		for i, s := range streams {
			events := collect(t, s)
			if last := events[len(events)-1]; last.Finish != FinishCancelled || !errors.Is(last.Err, ErrClosed) {
				t.Errorf("stream %d: last event %+v", i, last)
			}
		}
		if err := e.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestFloat16ToFloat32(t *testing.T) {
	tests := []struct {
		h    uint16
		want float32
	}{
		{0x0000, 0}, {0x3c00, 1}, {0xc000, -2}, {0x3555, 0.333251953125}, {0x7bff, 65504},
		{0x0001, 5.960464477539063e-08}, {0x03ff, 6.097555160522461e-05}, {0x7c00, float32(math.Inf(1))},
	}
	for _, tt := range tests {
		if got := float16ToFloat32(tt.h); got != tt.want {
			t.Errorf("float16ToFloat32(%#04x) = %g, want %g", tt.h, got, tt.want)
		}
	}
	if got := float16ToFloat32(0x7e00); got == got {
		t.Errorf("float16ToFloat32(NaN) = %g", got)
	}
}

func TestOpenSizesSlotsToTheKVBudget(t *testing.T) {
	// Tiny model: 2 layers, 2 KV heads of 16, 256 tokens of float32 (the
	// fp16 one of float16, half the bytes). The MHA one has 4 KV heads and
	// needs its slots three times over (the cache, a full batch's pasts and
	// presents) and two more for prefills.
	slot := kvBytes(2, 1, 2, 256, 16, 4)
	mhaSlot := kvBytes(2, 1, 4, 256, 16, 4)
	fp16Slot := kvBytes(2, 1, 2, 256, 16, 2)
	tests := []struct {
		name      string
		style     tinyStyle
		opts      Options
		wantSlots int
		wantErr   string
	}{
		{"default fits", gqaStyle, Options{}, DefaultMaxSequences, ""},
		{"budget for three", gqaStyle, Options{MaxKVCacheBytes: 3*slot + slot/2}, 3, ""},
		{"explicit within budget", gqaStyle, Options{MaxSequences: 2, MaxKVCacheBytes: 3 * slot}, 2, ""},
		{"explicit over budget", gqaStyle, Options{MaxSequences: 4, MaxKVCacheBytes: 3 * slot}, 0, "lower max_sequences or max_context"},
		{"not even one", gqaStyle, Options{MaxKVCacheBytes: slot - 1}, 0, "lower max_context"},
		{"mha budget for two", mhaStyle, Options{MaxKVCacheBytes: 8*mhaSlot + mhaSlot/2}, 2, ""},
		{"mha scratch counted", mhaStyle, Options{MaxKVCacheBytes: 5*mhaSlot - 1}, 0, "lower max_context"},
		{"mha explicit over budget", mhaStyle, Options{MaxSequences: 2, MaxKVCacheBytes: 8*mhaSlot - 1}, 0, "lower max_sequences"},
		{"fp16 budget for three", fp16Style, Options{MaxKVCacheBytes: 3*fp16Slot + fp16Slot/2}, 3, ""},
		{"fp16 not even one", fp16Style, Options{MaxKVCacheBytes: fp16Slot - 1}, 0, "lower max_context"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.MaxContext = 256
			tt.opts.ONNX.IntraOpThreads = 1
			tt.opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			e, err := Open(tinyModelDir(t, tt.style), tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					if e != nil {
						e.Close()
					}
					t.Fatalf("Open: err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if got := e.Stats().Slots; got != tt.wantSlots {
				t.Errorf("slots %d, want %d", got, tt.wantSlots)
			}
		})
	}
}

func TestFloat16TableMatchesConversion(t *testing.T) {
	table := float16Table()
	for h := range 1 << 16 {
		want := float16ToFloat32(uint16(h))
		if got := table[h]; math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("table[%#04x] = %g, want %g", h, got, want)
		}
	}
}

func BenchmarkFloat16Logits(b *testing.B) {
	in := make([]uint16, 32064)
	for i := range in {
		in[i] = uint16(i * 7)
	}
	out := make([]float32, len(in))
	b.Run("convert", func(b *testing.B) {
		for b.Loop() {
			for i, h := range in {
				out[i] = float16ToFloat32(h)
			}
		}
	})
	b.Run("table", func(b *testing.B) {
		table := float16Table()
		for b.Loop() {
			for i, h := range in {
				out[i] = table[h]
			}
		}
	})
}

func TestOpenShortensTheDefaultContextToTheKVBudget(t *testing.T) {
	// The tiny models' context is 4096 tokens. An MHA export needs five
	// slots' worth of cache for one sequence, a GQA export one.
	tests := []struct {
		name        string
		style       tinyStyle
		opts        Options
		wantContext int
		wantSlots   int
	}{
		{"gqa", gqaStyle, Options{MaxKVCacheBytes: kvBytes(2, 1, 2, 1000, 16, 4)}, 1000, 1},
		{"mha", mhaStyle, Options{MaxKVCacheBytes: 5 * kvBytes(2, 1, 4, 1000, 16, 4)}, 1000, 1},
		{"fits whole", gqaStyle, Options{MaxKVCacheBytes: 2 * kvBytes(2, 1, 2, 4096, 16, 4)}, 4096, 2},
		{"explicit context kept", gqaStyle, Options{MaxContext: 2000, MaxKVCacheBytes: kvBytes(2, 1, 2, 2000, 16, 4)}, 2000, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.ONNX.IntraOpThreads = 1
			tt.opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			e, err := Open(tinyModelDir(t, tt.style), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if got := e.ContextLength(); got != tt.wantContext {
				t.Errorf("context %d, want %d", got, tt.wantContext)
			}
			if got := e.Stats().Slots; got != tt.wantSlots {
				t.Errorf("slots %d, want %d", got, tt.wantSlots)
			}
		})
	}
}
