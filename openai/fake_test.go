package openai

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelserver/modelserver/llm"
)

// Token ids of fakeModel's byte tokenizer: 0 unknown, 1 BOS, 2 EOS, then
// byte b is id b+3.
const (
	fakeBOS   = 1
	fakeEOS   = 2
	fakeVocab = 259
)

// fakeModel generates a fixed reply, one byte per token, with a byte-level
// tokenizer and a simple chat template. Choice j of a seeded request
// replies with the seed's value, so tests can tell sequences apart.
type fakeModel struct {
	reply  string
	ctxLen int
	// admitErr, when set, is what Generate returns.
	admitErr error
	// failAfter > 0 ends every sequence with FinishError after that many
	// tokens.
	failAfter int
	// gate, when set, must be received from before each token is emitted.
	gate chan struct{}
	// delay, when set, passes before each token, like a decode step.
	delay time.Duration

	running   atomic.Int32
	cancelled chan struct{} // one send per sequence that saw its context end
	wg        sync.WaitGroup

	mu       sync.Mutex
	requests []llm.Request // guarded by mu
}

func newFakeModel(reply string) *fakeModel {
	return &fakeModel{reply: reply, ctxLen: 256, cancelled: make(chan struct{}, 64)}
}

func (f *fakeModel) Name() string       { return "fake-llm" }
func (f *fakeModel) ContextLength() int { return f.ctxLen }
func (f *fakeModel) VocabSize() int     { return fakeVocab }

func (f *fakeModel) Stats() llm.Stats {
	r := int(f.running.Load())
	return llm.Stats{Running: r, SlotsUsed: r, Slots: 8}
}

func (f *fakeModel) Tokenize(text string, addSpecial bool) []int32 {
	var ids []int32
	if addSpecial {
		ids = append(ids, fakeBOS)
	}
	for i := range len(text) {
		ids = append(ids, int32(text[i])+3)
	}
	return ids
}

func (f *fakeModel) Detokenize(ids []int32, skipSpecial bool) string {
	var b strings.Builder
	for _, id := range ids {
		switch {
		case id == fakeBOS && !skipSpecial:
			b.WriteString("<s>")
		case id == fakeEOS && !skipSpecial:
			b.WriteString("</s>")
		case id >= 3:
			b.WriteByte(byte(id - 3))
		}
	}
	return b.String()
}

func (f *fakeModel) TokenText(id int32) string { return f.Detokenize([]int32{id}, false) }

func (f *fakeModel) RenderChat(messages []Message, addGenerationPrompt bool) (string, error) {
	var b strings.Builder
	for _, m := range messages {
		if strings.Contains(m.Content, "RAISE") {
			return "", fmt.Errorf("%w: raised by the template", ErrPromptRejected)
		}
		fmt.Fprintf(&b, "<|%s|>%s<|end|>", m.Role, m.Content)
	}
	if addGenerationPrompt {
		b.WriteString("<|assistant|>")
	}
	return b.String(), nil
}

func (f *fakeModel) lastRequests() []llm.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]llm.Request(nil), f.requests...)
}

func (f *fakeModel) Generate(ctx context.Context, req llm.Request) (<-chan llm.Event, error) {
	if f.admitErr != nil {
		return nil, f.admitErr
	}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	reply := f.reply
	if req.Params.Seed != nil {
		reply = fmt.Sprintf("seed %d", *req.Params.Seed)
	}
	events := make(chan llm.Event, len(reply)+2)
	f.running.Add(1)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(events)
		defer f.running.Add(-1)
		f.generate(ctx, req, reply, events)
	}()
	return events, nil
}

// generate emits reply byte by byte, holding back text that could start a
// stop string, as the engine does.
func (f *fakeModel) generate(ctx context.Context, req llm.Request, reply string, events chan<- llm.Event) {
	usage := llm.Usage{PromptTokens: len(req.Prompt)}
	final := func(ev llm.Event) {
		ev.Usage = usage
		events <- ev
	}
	var pending string
	for i := 0; ; i++ {
		if f.gate != nil {
			select {
			case <-f.gate:
			case <-ctx.Done():
				f.cancelled <- struct{}{}
				final(llm.Event{Token: -1, Finish: llm.FinishCancelled})
				return
			}
		}
		if f.delay > 0 {
			t := time.NewTimer(f.delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if ctx.Err() != nil {
			f.cancelled <- struct{}{}
			final(llm.Event{Token: -1, Finish: llm.FinishCancelled})
			return
		}
		if f.failAfter > 0 && i == f.failAfter {
			final(llm.Event{Token: -1, Finish: llm.FinishError, Err: fmt.Errorf("fake runtime failure")})
			return
		}
		if i == len(reply) && !req.Params.IgnoreEOS {
			usage.CompletionTokens++
			final(llm.Event{Token: fakeEOS, Text: pending, Logprob: -0.25, TopLogprobs: f.top(req, fakeEOS), Finish: llm.FinishStop})
			return
		}
		b := reply[i%len(reply)]
		id := int32(b) + 3
		usage.CompletionTokens++
		ev := llm.Event{Token: id, Logprob: -0.5, TopLogprobs: f.top(req, id)}
		pending += string(rune(b))
		if text, stopped := cutStop(pending, req.Params.Stop); stopped {
			ev.Text, ev.Finish = text, llm.FinishStop
			final(ev)
			return
		}
		if !maybeStop(pending, req.Params.Stop) {
			ev.Text, pending = pending, ""
		}
		if req.Params.MaxTokens > 0 && usage.CompletionTokens == req.Params.MaxTokens {
			ev.Text, ev.Finish = ev.Text+pending, llm.FinishLength
			final(ev)
			return
		}
		events <- ev
	}
}

func (f *fakeModel) top(req llm.Request, id int32) []llm.TokenLogprob {
	if !req.Params.Logprobs || req.Params.TopLogprobs == 0 {
		return nil
	}
	out := []llm.TokenLogprob{{Token: id, Text: f.TokenText(id), Logprob: -0.5}}
	for alt := int32(3); len(out) < req.Params.TopLogprobs; alt++ {
		if alt != id {
			out = append(out, llm.TokenLogprob{Token: alt, Text: f.TokenText(alt), Logprob: -3})
		}
	}
	return out
}

func cutStop(text string, stops []string) (string, bool) {
	for _, s := range stops {
		if i := strings.Index(text, s); i >= 0 {
			return text[:i], true
		}
	}
	return text, false
}

func maybeStop(text string, stops []string) bool {
	for _, s := range stops {
		for n := 1; n < len(s) && n <= len(text); n++ {
			if strings.HasSuffix(text, s[:n]) {
				return true
			}
		}
	}
	return false
}
