package llm

import (
	"context"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// fakeDecoder stands in for the model: a slot's logits are a pseudo-random
// function of every token the slot holds, so a sequence decoded from the
// wrong slot, or with a wrong length, produces different tokens.
type fakeDecoder struct {
	vocab, nSlots, maxLen int
	// favour, when set, names the token that gets a large logit after the
	// given history (a scripted model); -1 leaves the logits random.
	favour func(history []int32) int32
	// gate, when set, is received from before every run, so a test can
	// hold the scheduler between steps.
	gate chan struct{}
	// static skips computing logits: every run returns the same ones.
	static bool

	mu       sync.Mutex // guards the counters, read by tests
	history  [][]int32
	logits   []float32
	prefills int
	decodes  int
	maxRows  int
	stopped  chan struct{}
	stopOnce sync.Once
	run      time.Duration
}

func newFakeDecoder(vocab, slots, maxLen int) *fakeDecoder {
	return &fakeDecoder{
		vocab: vocab, nSlots: slots, maxLen: maxLen,
		history: make([][]int32, slots),
		logits:  make([]float32, slots*vocab),
		stopped: make(chan struct{}),
	}
}

func (f *fakeDecoder) vocabSize() int         { return f.vocab }
func (f *fakeDecoder) slots() int             { return f.nSlots }
func (f *fakeDecoder) runTime() time.Duration { return f.run }
func (f *fakeDecoder) interrupt()             { f.stopOnce.Do(func() { close(f.stopped) }) }
func (f *fakeDecoder) close() error           { return nil }

var errInterrupted = errors.New("fake: interrupted")

func (f *fakeDecoder) wait() error {
	if f.gate == nil {
		return nil
	}
	select {
	case <-f.gate:
		return nil
	case <-f.stopped:
		return errInterrupted
	}
}

func (f *fakeDecoder) fill(row []float32, history []int32) {
	if f.static {
		return
	}
	h := fnv.New64a()
	for _, t := range history {
		h.Write([]byte{byte(t), byte(t >> 8), byte(t >> 16), byte(t >> 24)})
	}
	rng := rand.New(rand.NewPCG(h.Sum64(), 1))
	for i := range row {
		row[i] = float32(rng.NormFloat64())
	}
	if f.favour != nil {
		if t := f.favour(history); t >= 0 {
			row[t] = 50
		}
	}
}

func (f *fakeDecoder) prefill(slot int, tokens []int32, past int) ([]float32, error) {
	if err := f.wait(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.history[slot]) < past || past+len(tokens) > f.maxLen {
		return nil, errors.New("fake: prefill past the cached tokens or the slot")
	}
	f.prefills++
	f.history[slot] = append(f.history[slot][:past], tokens...)
	row := f.logits[:f.vocab]
	f.fill(row, f.history[slot])
	return row, nil
}

func (f *fakeDecoder) decode(tokens []int32, lens []int32) ([]float32, error) {
	if err := f.wait(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decodes++
	f.maxRows = max(f.maxRows, len(tokens))
	for b, t := range tokens {
		if len(f.history[b]) < int(lens[b]) || int(lens[b])+1 > f.maxLen {
			return nil, errors.New("fake: decode past the cached tokens or the slot")
		}
		f.history[b] = append(f.history[b][:lens[b]], t)
		f.fill(f.logits[b*f.vocab:(b+1)*f.vocab], f.history[b])
	}
	return f.logits[:len(tokens)*f.vocab], nil
}

func (f *fakeDecoder) move(from, to, length int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.history[to] = append(f.history[to][:0], f.history[from][:length]...)
	// Poison the old slot, as a real cache would hold stale data there.
	f.history[from] = append(f.history[from][:0], -1)
}

func (f *fakeDecoder) counts() (prefills, decodes, maxRows int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.prefills, f.decodes, f.maxRows
}

// fakeText spells token i as texts[i], or as a letter.
type fakeText struct{ texts map[int32]string }

type fakeTextStream struct{ t *fakeText }

func (s fakeTextStream) Add(id int32) string { return s.t.tokenText(id) }
func (s fakeTextStream) Flush() string       { return "" }

func (t *fakeText) newStream() tokenStream { return fakeTextStream{t} }
func (t *fakeText) tokenText(id int32) string {
	if s, ok := t.texts[id]; ok {
		return s
	}
	return string(rune('a' + id%26))
}

// fakeEOS is the fake model's end-of-sequence token.
const fakeEOS = 0

func newFakeEngine(t *testing.T, dec *fakeDecoder, det detokenizer, cfg schedulerConfig) *Engine {
	t.Helper()
	if cfg.contextLength == 0 {
		cfg.contextLength = dec.maxLen
	}
	if cfg.queueSize == 0 {
		cfg.queueSize = 64
	}
	if cfg.prefillChunk == 0 {
		cfg.prefillChunk = 512
	}
	if cfg.eos == nil {
		cfg.eos = []int32{fakeEOS}
	}
	if det == nil {
		det = &fakeText{}
	}
	e := &Engine{sched: newScheduler(dec, det, cfg)}
	t.Cleanup(func() { e.Close() })
	return e
}

// collect reads a stream to its end.
// generateAll starts every request at once, so they share batches, and
// returns each one's outcome.
func generateAll(t *testing.T, e *Engine, reqs []Request) []outcome {
	t.Helper()
	outcomes := make([]outcome, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		s, err := e.Generate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { outcomes[i] = summarise(t, collect(t, s)) })
	}
	wg.Wait()
	return outcomes
}

func collect(t *testing.T, s *Stream) []Event {
	t.Helper()
	var events []Event
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				return events
			}
			events = append(events, ev)
		case <-timeout:
			t.Fatalf("stream did not end; got %d events", len(events))
		}
	}
}

// outcome summarises a finished stream.
type outcome struct {
	tokens []int32
	text   string
	finish FinishReason
	err    error
	usage  Usage
}

func summarise(t *testing.T, events []Event) outcome {
	t.Helper()
	var o outcome
	for i, ev := range events {
		if ev.Token >= 0 {
			o.tokens = append(o.tokens, ev.Token)
		}
		o.text += ev.Text
		last := i == len(events)-1
		if (ev.Finish != "") != last {
			t.Fatalf("event %d of %d has finish %q", i, len(events), ev.Finish)
		}
		if last {
			o.finish, o.err, o.usage = ev.Finish, ev.Err, ev.Usage
		}
	}
	return o
}

func generate(t *testing.T, e *Engine, ctx context.Context, req Request) outcome {
	t.Helper()
	s, err := e.Generate(ctx, req)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return summarise(t, collect(t, s))
}

// noEOS keeps the random fake model from stopping early.
func noEOS(history []int32) int32 { return -1 }

// waitFor polls cond until it holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
