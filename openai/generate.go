package openai

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/modelserver/modelserver/llm"
)

var (
	// errNoFinalEvent is a sequence whose events ended without one that has
	// Finish set, which the llm contract rules out.
	errNoFinalEvent = errors.New("the engine ended a sequence without a final event")
	// errSequenceFailed is a FinishError event that carries no error.
	errSequenceFailed = errors.New("the engine failed the sequence")
)

// seqEvent is one event of sequence index, or closed when its stream ended.
type seqEvent struct {
	index  int
	ev     llm.Event
	at     time.Time
	closed bool
}

// run is a request's sequences in flight. The handler's goroutine calls
// next until done and then stop. A single sequence is read directly; with
// several, one forwarding goroutine per sequence moves its events onto a
// shared channel, so they interleave.
type run struct {
	single  <-chan llm.Event // the only sequence's events, or nil
	events  chan seqEvent    // forwarded events when there are several
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	open    int // sequences that have not ended
	clocks  []sequenceClock
	start   time.Time
	metrics *metrics
}

// startRun admits every sequence of p under ctx. If one is refused, the
// ones already admitted are cancelled and the refusal returned. start is
// the request's arrival, for time to first token.
func (a *API) startRun(ctx context.Context, m Model, p *plan, start time.Time) (*run, error) {
	ctx, cancel := context.WithCancel(ctx)
	n := p.sequences()
	streams := make([]<-chan llm.Event, n)
	for i := range streams {
		req := p.request(i)
		stream, err := m.Generate(ctx, req)
		if err != nil {
			cancel()
			return nil, err
		}
		streams[i] = stream
		a.metrics.promptTokens.Add(float64(len(req.Prompt)))
	}
	r := &run{
		cancel:  cancel,
		open:    n,
		clocks:  make([]sequenceClock, n),
		start:   start,
		metrics: a.metrics,
	}
	if n == 1 {
		r.single = streams[0]
		return r, nil
	}
	r.events = make(chan seqEvent)
	r.wg.Add(n)
	for i, stream := range streams {
		go r.forward(ctx, i, stream)
	}
	return r, nil
}

func (r *run) forward(ctx context.Context, index int, stream <-chan llm.Event) {
	defer r.wg.Done()
	for {
		var e seqEvent
		select {
		case ev, ok := <-stream:
			e = seqEvent{index: index, ev: ev, at: time.Now(), closed: !ok}
		case <-ctx.Done():
			return
		}
		select {
		case r.events <- e:
		case <-ctx.Done():
			return
		}
		if e.closed {
			return
		}
	}
}

// done says whether every sequence has ended.
func (r *run) done() bool { return r.open == 0 }

// next returns the next event of any sequence, recording metrics. A stream
// that closed without a final event comes back as a FinishError event.
func (r *run) next(ctx context.Context) (seqEvent, error) {
	for {
		var e seqEvent
		select {
		case ev, ok := <-r.single: // never ready when nil
			e = seqEvent{ev: ev, at: time.Now(), closed: !ok}
		case e = <-r.events:
		case <-ctx.Done():
			return seqEvent{}, context.Cause(ctx)
		}
		c := &r.clocks[e.index]
		if e.closed {
			if c.finished {
				continue
			}
			e = seqEvent{index: e.index, ev: llm.Event{Token: -1, Finish: llm.FinishError, Err: errNoFinalEvent}, at: e.at}
		}
		if e.ev.Token >= 0 {
			r.metrics.token(c, r.start, e.at)
		}
		if e.ev.Finish != "" {
			c.finished = true
			r.open--
			r.metrics.finished.WithLabelValues(string(e.ev.Finish)).Inc()
		}
		return e, nil
	}
}

// stop cancels the sequences still running and waits for the forwarders.
func (r *run) stop() {
	r.cancel()
	r.wg.Wait()
	r.metrics.e2e.Observe(time.Since(r.start).Seconds())
}
