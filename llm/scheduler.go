package llm

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// decoder runs the model over a KV cache of fixed-size slots, one sequence
// per slot. Only the scheduler goroutine calls it, except interrupt.
type decoder interface {
	vocabSize() int
	slots() int
	// prefill appends tokens to the past tokens already cached in slot and
	// returns the logits after the last one, valid until the next call.
	prefill(slot int, tokens []int32, past int) ([]float32, error)
	// decode appends tokens[b] to the lens[b] tokens cached in slot b, for
	// every b < len(tokens) at once, and returns len(tokens)×vocab logits,
	// valid until the next call.
	decode(tokens []int32, lens []int32) ([]float32, error)
	// move copies the first length cached tokens of slot from to slot to.
	move(from, to, length int)
	// runTime is the total time spent inside the runtime's Run calls.
	runTime() time.Duration
	// interrupt aborts a run in progress, and every later one; it is safe
	// to call from any goroutine.
	interrupt()
	close() error
}

// schedulerConfig sizes the scheduler; every field is set.
type schedulerConfig struct {
	contextLength int
	queueSize     int
	prefillChunk  int
	eos           []int32
}

// sequenceState is guarded by scheduler.mu; it records the queued →
// running handover between the cancellation callback and the scheduler.
type sequenceState int

const (
	stateQueued sequenceState = iota
	stateRunning
	stateDone
)

// sequence is one request's state. Everything but state is owned by whoever
// holds it: Generate until queued, then the scheduler (or, while queued, the
// cancellation callback under Engine.mu).
type sequence struct {
	// ctx travels with the request: the scheduler checks it before every
	// step, so a cancelled caller frees its slot.
	ctx        context.Context
	prompt     []int32
	params     SamplingParams
	events     chan Event
	stopCancel func() bool
	state      sequenceState

	finished  bool // set by the scheduler once the final event is sent
	slot      int
	cached    int // tokens in the KV cache
	generated int
	maxTokens int
	last      int32
	sampler   *sampler
	text      tokenStream
	stop      stopMatcher

	admitted, started, first time.Time
}

// scheduler is the part of Engine that runs sequences.
type scheduler struct {
	dec decoder
	det detokenizer
	cfg schedulerConfig

	mu      sync.Mutex
	waiting []*sequence
	closed  bool
	stats   Stats

	wake chan struct{} // capacity 1: something changed
	quit chan struct{} // closed by shutdown
	done chan struct{} // closed when run returns

	// Owned by the run goroutine. rows[b] sits in slot b, so the decode
	// batch covers slots 0..len(rows)-1; prefilling is in another slot.
	rows       []*sequence
	prefilling *sequence
	scratch    sampleScratch
	tokens     []int32
	lens       []int32
}

func newScheduler(dec decoder, det detokenizer, cfg schedulerConfig) *scheduler {
	s := &scheduler{
		dec:    dec,
		det:    det,
		cfg:    cfg,
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		tokens: make([]int32, 0, dec.slots()),
		lens:   make([]int32, 0, dec.slots()),
	}
	s.stats.Slots = dec.slots()
	go s.run()
	return s
}

func (s *scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// generate validates and queues a copy of req.
func (s *scheduler) generate(ctx context.Context, req Request) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	vocab := s.dec.vocabSize()
	if len(req.Prompt) == 0 {
		return nil, fmt.Errorf("%w: empty prompt", ErrInvalidParams)
	}
	for _, id := range req.Prompt {
		if id < 0 || int(id) >= vocab {
			return nil, fmt.Errorf("%w: prompt token id %d is outside the vocabulary (%d tokens)", ErrInvalidParams, id, vocab)
		}
	}
	p := req.Params
	if err := p.validate(vocab); err != nil {
		return nil, err
	}
	room := s.cfg.contextLength - len(req.Prompt)
	if room < max(p.MaxTokens, 1) {
		return nil, fmt.Errorf("%w: %d prompt tokens + %d max_tokens (at least 1) > %d", ErrContextLength, len(req.Prompt), max(p.MaxTokens, 1), s.cfg.contextLength)
	}
	// The caller may reuse its slices once Generate returns.
	p.StopTokenIDs, p.Stop = slices.Clone(p.StopTokenIDs), slices.Clone(p.Stop)
	if p.Seed != nil {
		seed := *p.Seed
		p.Seed = &seed
	}
	maxTokens := room
	if p.MaxTokens > 0 {
		maxTokens = p.MaxTokens
	}
	seq := &sequence{
		ctx:       ctx,
		prompt:    slices.Clone(req.Prompt),
		params:    p,
		events:    make(chan Event, maxTokens+1),
		maxTokens: maxTokens,
		stop:      stopMatcher{stops: p.Stop},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, ErrClosed
	case len(s.waiting) >= s.cfg.queueSize:
		return nil, fmt.Errorf("%w (%d waiting)", ErrQueueFull, len(s.waiting))
	}
	seq.admitted = time.Now()
	s.waiting = append(s.waiting, seq)
	s.stats.Waiting = len(s.waiting)
	seq.stopCancel = context.AfterFunc(ctx, func() { s.cancelled(seq) })
	s.signal()
	return &Stream{events: seq.events}, nil
}

// cancelled runs when a sequence's context ends: a queued sequence leaves
// the queue at once; a running one is dropped by the scheduler before its
// next step.
func (s *scheduler) cancelled(seq *sequence) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq.state != stateQueued {
		s.signal()
		return
	}
	s.waiting = slices.DeleteFunc(s.waiting, func(q *sequence) bool { return q == seq })
	s.stats.Waiting = len(s.waiting)
	seq.state = stateDone
	seq.final(FinishCancelled, nil)
}

// shutdown ends every sequence and stops the scheduler.
func (s *scheduler) shutdown() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.closed = true
	for _, seq := range s.waiting {
		seq.stopCancel()
		seq.state = stateDone
		seq.final(FinishCancelled, ErrClosed)
	}
	s.waiting = nil
	s.stats.Waiting = 0
	s.mu.Unlock()
	close(s.quit)
	s.dec.interrupt()
	<-s.done
}

func (s *scheduler) snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *scheduler) run() {
	defer close(s.done)
	for {
		select {
		case <-s.quit:
			s.abortAll(ErrClosed)
			return
		default:
		}
		s.dropCancelled()
		s.admit()
		if s.prefilling == nil && len(s.rows) == 0 {
			s.publish()
			select {
			case <-s.wake:
			case <-s.quit:
			}
			continue
		}
		// Prefill up to prefillChunk prompt tokens, of one or more short
		// prompts, then give the running sequences their step.
		for budget := s.cfg.prefillChunk; budget > 0 && s.prefilling != nil; s.admit() {
			budget -= s.prefillStep(budget)
		}
		if len(s.rows) > 0 {
			s.decodeStep()
		}
		s.publish()
	}
}

// publish updates the gauges.
func (s *scheduler) publish() {
	running := len(s.rows)
	if s.prefilling != nil {
		running++
	}
	s.mu.Lock()
	s.stats.Running, s.stats.SlotsUsed = running, running
	s.stats.Waiting = len(s.waiting)
	s.mu.Unlock()
}

func (s *scheduler) dropCancelled() {
	if p := s.prefilling; p != nil && p.ctx.Err() != nil {
		s.prefilling = nil
		p.finish(FinishCancelled, nil)
	}
	for i := len(s.rows) - 1; i >= 0; i-- {
		if seq := s.rows[i]; seq.ctx.Err() != nil {
			s.removeRow(i)
			seq.finish(FinishCancelled, nil)
		}
	}
}

func (s *scheduler) abortAll(err error) {
	if p := s.prefilling; p != nil {
		s.prefilling = nil
		p.finish(FinishCancelled, err)
	}
	for i := len(s.rows) - 1; i >= 0; i-- {
		seq := s.rows[i]
		s.rows = s.rows[:i]
		seq.finish(FinishCancelled, err)
	}
	s.publish()
}

// admit starts prefilling the next queued sequence when a slot is free. Only
// one sequence prefills at a time; it takes slot len(rows), the first one
// past the decode batch.
func (s *scheduler) admit() {
	if s.prefilling != nil || len(s.rows) >= s.dec.slots() {
		return
	}
	s.mu.Lock()
	if len(s.waiting) == 0 {
		s.mu.Unlock()
		return
	}
	seq := s.waiting[0]
	s.waiting[0] = nil
	s.waiting = s.waiting[1:]
	seq.state = stateRunning
	s.stats.Waiting = len(s.waiting)
	s.stats.Running = len(s.rows) + 1
	s.stats.SlotsUsed = s.stats.Running
	s.mu.Unlock()

	seq.slot = len(s.rows)
	seq.started = time.Now()
	seq.sampler = newSampler(seq.params, seq.prompt)
	seq.text = s.det.newStream()
	s.prefilling = seq
}

// removeRow frees row i, moving the last row into its slot so the batch
// stays contiguous.
func (s *scheduler) removeRow(i int) {
	last := len(s.rows) - 1
	if i != last {
		moved := s.rows[last]
		s.dec.move(last, i, moved.cached)
		moved.slot = i
		s.rows[i] = moved
	}
	s.rows[last] = nil
	s.rows = s.rows[:last]
}

// prefillStep runs the next chunk, of at most limit tokens, of the
// prefilling sequence's prompt and returns its length. After the last chunk
// it samples the first token and the sequence joins the decode batch.
func (s *scheduler) prefillStep(limit int) int {
	p := s.prefilling
	end := min(p.cached+limit, len(p.prompt))
	n := end - p.cached
	logits, err := s.dec.prefill(p.slot, p.prompt[p.cached:end], p.cached)
	if err != nil {
		s.prefilling = nil
		p.finish(s.failure(fmt.Errorf("llm: prefill: %w", err)))
		return n
	}
	s.mu.Lock()
	s.stats.PrefillTokens += int64(n)
	s.mu.Unlock()
	p.cached = end
	if end < len(p.prompt) {
		return n
	}
	s.prefilling = nil
	if s.emit(p, logits) {
		return n
	}
	if rows := len(s.rows); p.slot != rows {
		s.dec.move(p.slot, rows, p.cached)
		p.slot = rows
	}
	s.rows = append(s.rows, p)
	return n
}

// decodeStep runs one token of every row in one batch.
func (s *scheduler) decodeStep() {
	start := time.Now()
	runBefore := s.dec.runTime()
	s.tokens, s.lens = s.tokens[:0], s.lens[:0]
	for _, seq := range s.rows {
		s.tokens = append(s.tokens, seq.last)
		s.lens = append(s.lens, int32(seq.cached))
	}
	logits, err := s.dec.decode(s.tokens, s.lens)
	if err != nil {
		reason, err := s.failure(fmt.Errorf("llm: decode: %w", err))
		for i := len(s.rows) - 1; i >= 0; i-- {
			seq := s.rows[i]
			s.rows = s.rows[:i]
			seq.finish(reason, err)
		}
		return
	}
	vocab := s.dec.vocabSize()
	finished := false
	for b, seq := range s.rows {
		seq.cached++
		if s.emit(seq, logits[b*vocab:(b+1)*vocab]) {
			finished = true
		}
	}
	if finished {
		for i := len(s.rows) - 1; i >= 0; i-- {
			if s.rows[i].finished {
				s.removeRow(i)
			}
		}
	}
	s.mu.Lock()
	s.stats.DecodeSteps++
	s.stats.DecodeTokens += int64(len(s.tokens))
	s.stats.StepTime += time.Since(start)
	s.stats.RunTime += s.dec.runTime() - runBefore
	s.mu.Unlock()
}

// failure is how a failed run ends its sequences: with an error, or, when
// Close interrupted the run, as cancelled by ErrClosed.
func (s *scheduler) failure(err error) (FinishReason, error) {
	select {
	case <-s.quit:
		return FinishCancelled, ErrClosed
	default:
		return FinishError, err
	}
}

// emit samples seq's next token from logits and sends its event. It
// reports whether the sequence finished (its final event is sent then).
func (s *scheduler) emit(seq *sequence, logits []float32) bool {
	c := seq.sampler.sample(logits, &s.scratch)
	seq.sampler.observe(c.token)
	seq.generated++
	seq.last = c.token
	now := time.Now()
	if seq.generated == 1 {
		seq.first = now
	}
	ev := Event{Token: c.token, Logprob: c.logprob}
	if len(c.top) > 0 {
		ev.TopLogprobs = make([]TokenLogprob, len(c.top))
		for i, id := range c.top {
			ev.TopLogprobs[i] = TokenLogprob{Token: id, Text: s.det.tokenText(id), Logprob: c.topLP[i]}
		}
	}
	var reason FinishReason
	if s.isStopToken(seq, c.token) {
		// The stop token's own text is not part of the output.
		ev.Text, _ = seq.flushText()
		reason = FinishStop
	} else {
		text, stopped := seq.stop.push(seq.text.Add(c.token))
		ev.Text = text
		switch {
		case stopped:
			reason = FinishStop
		case seq.generated >= seq.maxTokens:
			rest, stopped := seq.flushText()
			ev.Text += rest
			reason = FinishLength
			if stopped {
				reason = FinishStop
			}
		}
	}
	if reason == "" {
		seq.events <- ev
		return false
	}
	ev.Finish = reason
	seq.complete(&ev, now)
	return true
}

func (s *scheduler) isStopToken(seq *sequence, id int32) bool {
	if !seq.params.IgnoreEOS && slices.Contains(s.cfg.eos, id) {
		return true
	}
	return slices.Contains(seq.params.StopTokenIDs, id)
}

// flushText returns the text still held by the token stream and the stop
// matcher; stopped reports a stop string found in it.
func (seq *sequence) flushText() (string, bool) {
	if seq.text == nil {
		return seq.stop.flush(), false
	}
	text, stopped := seq.stop.push(seq.text.Flush())
	if stopped {
		return text, true
	}
	return text + seq.stop.flush(), false
}

// finish sends a final event without a token.
func (seq *sequence) finish(reason FinishReason, err error) {
	ev := Event{Token: -1, Finish: reason, Err: err}
	if reason == FinishCancelled && err == nil {
		ev.Err = seq.ctx.Err()
	}
	ev.Text, _ = seq.flushText()
	seq.complete(&ev, time.Now())
}

// final ends a sequence that never ran.
func (seq *sequence) final(reason FinishReason, err error) {
	if err == nil {
		err = seq.ctx.Err()
	}
	ev := Event{Token: -1, Finish: reason, Err: err}
	seq.complete(&ev, time.Now())
}

// complete fills in the final event's accounting, sends it and closes the
// stream. The channel holds max_tokens+1 events, so this never blocks.
func (seq *sequence) complete(ev *Event, now time.Time) {
	seq.finished = true
	seq.stopCancel()
	ev.Usage = Usage{PromptTokens: len(seq.prompt), CompletionTokens: seq.generated}
	ev.Timing.Total = now.Sub(seq.admitted)
	if !seq.started.IsZero() {
		ev.Timing.Queued = seq.started.Sub(seq.admitted)
	} else {
		ev.Timing.Queued = ev.Timing.Total
	}
	if !seq.first.IsZero() {
		ev.Timing.FirstToken = seq.first.Sub(seq.admitted)
	}
	seq.events <- *ev
	close(seq.events)
}
