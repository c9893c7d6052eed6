package llm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func prompt(n int, salt int32) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = 1 + (int32(i)*7+salt)%60
	}
	return p
}

// TestBatchedEqualsAlone decodes sequences of different prompt and output
// lengths that join and leave a running batch, and checks each against the
// same sequence decoded alone. The fake model's logits depend on every token
// in the slot, so slot moves and masks must be right for the tokens to
// match.
func TestBatchedEqualsAlone(t *testing.T) {
	reqs := make([]Request, 10)
	for i := range reqs {
		reqs[i] = Request{Prompt: prompt(3+5*i, int32(i)), Params: SamplingParams{MaxTokens: 4 + 3*(i%4), IgnoreEOS: true}}
	}
	alone := make([]outcome, len(reqs))
	for i, req := range reqs {
		e := newFakeEngine(t, newFakeDecoder(64, 4, 128), nil, schedulerConfig{prefillChunk: 4})
		alone[i] = generate(t, e, context.Background(), req)
		e.Close()
		if alone[i].finish != FinishLength || len(alone[i].tokens) != req.Params.MaxTokens {
			t.Fatalf("alone %d: %d tokens, finish %q", i, len(alone[i].tokens), alone[i].finish)
		}
	}
	dec := newFakeDecoder(64, 4, 128)
	e := newFakeEngine(t, dec, nil, schedulerConfig{prefillChunk: 4})
	batched := generateAll(t, e, reqs)
	for i := range reqs {
		if !slices.Equal(batched[i].tokens, alone[i].tokens) {
			t.Errorf("request %d: batched %v, alone %v", i, batched[i].tokens, alone[i].tokens)
		}
	}
	if _, _, rows := dec.counts(); rows < 2 {
		t.Errorf("the largest decode batch had %d rows; the test meant to batch", rows)
	}
}

func TestFinishAndUsage(t *testing.T) {
	// The scripted model says 5, 6, 7, then eos.
	script := func(history []int32) int32 {
		n := len(history) - 3
		if n < 3 {
			return int32(5 + n)
		}
		return fakeEOS
	}
	tests := []struct {
		name   string
		params SamplingParams
		want   []int32
		text   string
		finish FinishReason
	}{
		{"eos", SamplingParams{}, []int32{5, 6, 7, fakeEOS}, "fgh", FinishStop},
		{"max tokens", SamplingParams{MaxTokens: 2}, []int32{5, 6}, "fg", FinishLength},
		{"stop token id", SamplingParams{StopTokenIDs: []int32{6}}, []int32{5, 6}, "f", FinishStop},
		{"ignore eos", SamplingParams{IgnoreEOS: true, MaxTokens: 4}, []int32{5, 6, 7, 0}, "fgha", FinishLength},
		{"context full", SamplingParams{IgnoreEOS: true}, []int32{5, 6, 7, 0, 0}, "fghaa", FinishLength},
		{"stop string", SamplingParams{Stop: []string{"gh"}}, []int32{5, 6, 7}, "f", FinishStop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := newFakeDecoder(32, 2, 8)
			dec.favour = script
			e := newFakeEngine(t, dec, nil, schedulerConfig{})
			got := generate(t, e, context.Background(), Request{Prompt: []int32{1, 2, 3}, Params: tt.params})
			if !slices.Equal(got.tokens, tt.want) || got.text != tt.text || got.finish != tt.finish || got.err != nil {
				t.Errorf("got %v %q %q %v, want %v %q %q", got.tokens, got.text, got.finish, got.err, tt.want, tt.text, tt.finish)
			}
			if want := (Usage{PromptTokens: 3, CompletionTokens: len(tt.want)}); got.usage != want {
				t.Errorf("usage %+v, want %+v", got.usage, want)
			}
		})
	}
}

// TestStopStringAcrossTokens spells the output in pieces that split the stop
// string, and checks that no part of it is ever emitted.
func TestStopStringAcrossTokens(t *testing.T) {
	texts := map[int32]string{5: "Hel", 6: "lo <", 7: "|e", 8: "nd", 9: "|> more", 10: "<", 11: "x"}
	tests := []struct {
		name   string
		script []int32
		stop   []string
		text   string
		finish FinishReason
	}{
		{"split over three tokens", []int32{5, 6, 7, 8, 9}, []string{"<|end|>"}, "Hello ", FinishStop},
		{"false start released", []int32{10, 11, 5, 6, 7, 8, 9}, []string{"<|end|>"}, "<xHello ", FinishStop},
		{"earliest of two", []int32{5, 6, 7, 8, 9}, []string{"nd|", "lo"}, "Hel", FinishStop},
		{"held text flushed at length", []int32{5, 10}, []string{"<|end|>"}, "Hel<", FinishLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := newFakeDecoder(32, 1, 64)
			dec.favour = func(history []int32) int32 { return tt.script[len(history)-1] }
			e := newFakeEngine(t, dec, &fakeText{texts: texts}, schedulerConfig{})
			s, err := e.Generate(context.Background(), Request{Prompt: []int32{1}, Params: SamplingParams{MaxTokens: len(tt.script), Stop: tt.stop}})
			if err != nil {
				t.Fatal(err)
			}
			events := collect(t, s)
			got := summarise(t, events)
			if got.text != tt.text || got.finish != tt.finish {
				t.Errorf("text %q finish %q, want %q %q", got.text, got.finish, tt.text, tt.finish)
			}
			var emitted string
			for _, ev := range events {
				emitted += ev.Text
				for _, stop := range tt.stop {
					if strings.Contains(emitted, stop) {
						t.Errorf("emitted text %q contains stop string %q", emitted, stop)
					}
				}
			}
		})
	}
}

func TestStopMatcher(t *testing.T) {
	tests := []struct {
		stops  []string
		pushes []string
		want   []string
		stop   bool
		held   string
	}{
		{nil, []string{"abc"}, []string{"abc"}, false, ""},
		{[]string{"xyz"}, []string{"abx", "y", "q"}, []string{"ab", "", "xyq"}, false, ""},
		{[]string{"xyz"}, []string{"abx", "yzc"}, []string{"ab", ""}, true, ""},
		{[]string{"aa"}, []string{"baaa"}, []string{"b"}, true, ""},
		{[]string{"abc", "bcd"}, []string{"xab", "cd"}, []string{"x", ""}, true, ""},
		{[]string{"é!"}, []string{"café"}, []string{"caf"}, false, "é"},
	}
	for _, tt := range tests {
		m := stopMatcher{stops: tt.stops}
		var got []string
		stopped := false
		for _, p := range tt.pushes {
			out, s := m.push(p)
			got = append(got, out)
			if s {
				stopped = true
				break
			}
		}
		if !slices.Equal(got, tt.want) || stopped != tt.stop || m.held != tt.held {
			t.Errorf("stops %q pushes %q: got %q stop %v held %q, want %q %v %q", tt.stops, tt.pushes, got, stopped, m.held, tt.want, tt.stop, tt.held)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	e := newFakeEngine(t, newFakeDecoder(64, 2, 16), nil, schedulerConfig{})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		req  Request
		want error
	}{
		{"prompt fills the context", context.Background(), Request{Prompt: prompt(16, 0)}, ErrContextLength},
		{"prompt plus max tokens", context.Background(), Request{Prompt: prompt(10, 0), Params: SamplingParams{MaxTokens: 7}}, ErrContextLength},
		{"empty prompt", context.Background(), Request{}, ErrInvalidParams},
		{"token outside vocab", context.Background(), Request{Prompt: []int32{64}}, ErrInvalidParams},
		{"negative temperature", context.Background(), Request{Prompt: []int32{1}, Params: SamplingParams{Temperature: -1}}, ErrInvalidParams},
		{"top p above 1", context.Background(), Request{Prompt: []int32{1}, Params: SamplingParams{TopP: 1.5}}, ErrInvalidParams},
		{"too many top logprobs", context.Background(), Request{Prompt: []int32{1}, Params: SamplingParams{TopLogprobs: 21}}, ErrInvalidParams},
		{"stop id outside vocab", context.Background(), Request{Prompt: []int32{1}, Params: SamplingParams{StopTokenIDs: []int32{99}}}, ErrInvalidParams},
		{"empty stop string", context.Background(), Request{Prompt: []int32{1}, Params: SamplingParams{Stop: []string{""}}}, ErrInvalidParams},
		{"cancelled context", cancelled, Request{Prompt: []int32{1}}, context.Canceled},
	}
	for _, tt := range tests {
		if _, err := e.Generate(tt.ctx, tt.req); !errors.Is(err, tt.want) {
			t.Errorf("%s: Generate = %v, want %v", tt.name, err, tt.want)
		}
	}
	ok := generate(t, e, context.Background(), Request{Prompt: prompt(10, 0), Params: SamplingParams{MaxTokens: 6, IgnoreEOS: true}})
	if len(ok.tokens) != 6 {
		t.Errorf("prompt + max_tokens = context: %d tokens, want 6", len(ok.tokens))
	}
}

// TestQueueFull holds the scheduler inside a step, fills the queue, and
// checks the next request is refused, then that everything completes.
func TestQueueFull(t *testing.T) {
	dec := newFakeDecoder(32, 1, 64)
	dec.gate = make(chan struct{})
	dec.favour = noEOS
	e := newFakeEngine(t, dec, nil, schedulerConfig{queueSize: 2})
	req := Request{Prompt: []int32{1, 2}, Params: SamplingParams{MaxTokens: 2}}
	var streams []*Stream
	for range 3 { // one running (held in prefill), two queued
		s, err := e.Generate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
		waitFor(t, "admission", func() bool { st := e.Stats(); return st.Running == 1 })
	}
	if st := e.Stats(); st.Waiting != 2 || st.Running != 1 {
		t.Fatalf("stats %+v, want 2 waiting and 1 running", st)
	}
	if _, err := e.Generate(context.Background(), req); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Generate on a full queue = %v, want ErrQueueFull", err)
	}
	close(dec.gate)
	for _, s := range streams {
		if got := summarise(t, collect(t, s)); got.finish != FinishLength {
			t.Errorf("finish %q, want length", got.finish)
		}
	}
}

// TestCancel cancels a queued and a running sequence and checks that both
// end with FinishCancelled, that the slot is freed, and that a later request
// still runs.
func TestCancel(t *testing.T) {
	dec := newFakeDecoder(32, 1, 256)
	dec.gate = make(chan struct{})
	dec.favour = noEOS
	e := newFakeEngine(t, dec, nil, schedulerConfig{})
	step := func() { dec.gate <- struct{}{} }

	runCtx, cancelRun := context.WithCancel(context.Background())
	running, err := e.Generate(runCtx, Request{Prompt: []int32{1}, Params: SamplingParams{IgnoreEOS: true}})
	if err != nil {
		t.Fatal(err)
	}
	queueCtx, cancelQueued := context.WithCancel(context.Background())
	queued, err := e.Generate(queueCtx, Request{Prompt: []int32{2}})
	if err != nil {
		t.Fatal(err)
	}
	step() // prefill of the running sequence
	step() // one decode step
	for range 2 {
		if ev := <-running.Events(); ev.Token < 0 || ev.Finish != "" {
			t.Fatalf("event %+v", ev)
		}
	}

	cancelQueued()
	got := summarise(t, collect(t, queued))
	if got.finish != FinishCancelled || !errors.Is(got.err, context.Canceled) || len(got.tokens) != 0 {
		t.Errorf("queued: %+v, want cancelled with no tokens", got)
	}
	if st := e.Stats(); st.Waiting != 0 {
		t.Errorf("after cancelling the queued request: %+v", st)
	}

	cancelRun()
	close(dec.gate) // let the step in flight (if any) finish; no later step may run this sequence
	events := collect(t, running)
	if last := events[len(events)-1]; last.Finish != FinishCancelled || last.Token != -1 {
		t.Errorf("running: last event %+v, want cancelled", last)
	}
	if got := summarise(t, events); len(got.tokens) > 2 || got.usage.CompletionTokens != 2+len(got.tokens) {
		t.Errorf("running: %d more tokens after cancel, usage %+v; want at most the step in flight", len(got.tokens), got.usage)
	}
	waitFor(t, "the slot to be freed", func() bool { st := e.Stats(); return st.Running == 0 && st.SlotsUsed == 0 })

	next, err := e.Generate(context.Background(), Request{Prompt: []int32{3}, Params: SamplingParams{MaxTokens: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if got := summarise(t, collect(t, next)); got.finish != FinishLength || len(got.tokens) != 2 {
		t.Errorf("after cancellations: %+v", got)
	}
}

// TestClose ends queued and running streams with ErrClosed.
func TestClose(t *testing.T) {
	dec := newFakeDecoder(32, 1, 64)
	dec.gate = make(chan struct{})
	e := newFakeEngine(t, dec, nil, schedulerConfig{})
	var streams []*Stream
	for i := range 3 {
		s, err := e.Generate(context.Background(), Request{Prompt: []int32{int32(1 + i)}})
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	waitFor(t, "admission", func() bool { return e.Stats().Running == 1 })
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for i, s := range streams {
		got := summarise(t, collect(t, s))
		if got.finish != FinishCancelled || !errors.Is(got.err, ErrClosed) {
			t.Errorf("stream %d: %+v, want cancelled with ErrClosed", i, got)
		}
	}
	if _, err := e.Generate(context.Background(), Request{Prompt: []int32{1}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Generate after Close = %v, want ErrClosed", err)
	}
}

// TestSeedIndependentOfBatch samples a seeded sequence alone and next to
// others, and checks the tokens match; another seed gives other tokens.
func TestSeedIndependentOfBatch(t *testing.T) {
	seed := func(s uint64) *uint64 { return &s }
	params := func(s uint64) SamplingParams {
		return SamplingParams{Temperature: 1.3, TopK: 40, TopP: 0.95, Seed: seed(s), MaxTokens: 20, IgnoreEOS: true}
	}
	req := Request{Prompt: prompt(5, 3), Params: params(42)}
	e := newFakeEngine(t, newFakeDecoder(64, 4, 64), nil, schedulerConfig{})
	alone := generate(t, e, context.Background(), req)

	var wg sync.WaitGroup
	results := make([]outcome, 4)
	for i := range results {
		r := req
		if i > 0 {
			r = Request{Prompt: prompt(3+i, int32(i)), Params: SamplingParams{Temperature: 1, MaxTokens: 10 + i, IgnoreEOS: true}}
		}
		s, err := e.Generate(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { results[i] = summarise(t, collect(t, s)) })
	}
	wg.Wait()
	if diff := cmp.Diff(alone.tokens, results[0].tokens); diff != "" {
		t.Errorf("seeded tokens differ in a batch (-alone +batched):\n%s", diff)
	}
	other := generate(t, e, context.Background(), Request{Prompt: req.Prompt, Params: params(43)})
	if slices.Equal(other.tokens, alone.tokens) {
		t.Errorf("seeds 42 and 43 gave the same 20 tokens %v", alone.tokens)
	}
}

func TestLogprobs(t *testing.T) {
	e := newFakeEngine(t, newFakeDecoder(32, 1, 16), nil, schedulerConfig{})
	s, err := e.Generate(context.Background(), Request{Prompt: []int32{1}, Params: SamplingParams{MaxTokens: 3, IgnoreEOS: true, Logprobs: true, TopLogprobs: 3}})
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range collect(t, s) {
		if len(ev.TopLogprobs) != 3 {
			t.Fatalf("event %d: %d top logprobs, want 3", i, len(ev.TopLogprobs))
		}
		top := ev.TopLogprobs[0]
		// Greedy: the chosen token is the most likely one.
		if top.Token != ev.Token || top.Logprob != ev.Logprob || ev.Logprob > 0 {
			t.Errorf("event %d: token %d logprob %g, top %+v", i, ev.Token, ev.Logprob, top)
		}
		if top.Text != fmt.Sprint(string(rune('a'+top.Token%26))) {
			t.Errorf("top text %q for token %d", top.Text, top.Token)
		}
		if !(ev.TopLogprobs[1].Logprob <= top.Logprob && ev.TopLogprobs[2].Logprob <= ev.TopLogprobs[1].Logprob) {
			t.Errorf("event %d: top logprobs not in order: %+v", i, ev.TopLogprobs)
		}
	}
}
