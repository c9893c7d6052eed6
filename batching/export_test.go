package batching

import (
	"sync"
	"time"
)

// WithClock makes the Batcher read time from c.
func WithClock(c *FakeClock) Option {
	return optionFunc(func(o *options) { o.clock = c })
}

// WithStageHook makes every execution call f before it looks at its
// requests (copying false) and before it copies their inputs (copying true).
func WithStageHook(f func(copying bool)) Option {
	return optionFunc(func(o *options) { o.stageHook = f })
}

// FakeClock is a clock that moves only when Advance is called.
type FakeClock struct {
	mu     sync.Mutex // guards the following
	now    time.Time
	timers []*fakeTimer // armed, not fired, not stopped
}

type fakeTimer struct {
	clk      *FakeClock
	c        chan time.Time
	deadline time.Time
}

// NewFakeClock returns a FakeClock at an arbitrary fixed time.
func NewFakeClock() *FakeClock {
	return &FakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Now implements clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer implements clock.
func (c *FakeClock) NewTimer(deadline time.Time) timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clk: c, c: make(chan time.Time, 1), deadline: deadline}
	if !deadline.After(c.now) {
		t.c <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	c := t.clk
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Advance moves the clock forward by d and fires the timers that are due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.deadline.After(c.now) {
			kept = append(kept, t)
		} else {
			t.c <- c.now
		}
	}
	clear(c.timers[len(kept):])
	c.timers = kept
}

// Settled reports whether the scheduler sleeps having taken every change
// into account, and until when (zero: until woken).
func (b *Batcher) Settled() (until time.Time, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.idle || b.seen != b.signals {
		return time.Time{}, false
	}
	if !b.waitUntil.IsZero() && !b.clock.Now().Before(b.waitUntil) {
		return time.Time{}, false // its timer has fired
	}
	return b.waitUntil, true
}

// QueueDepthForTest returns the number of queued requests.
func (b *Batcher) QueueDepthForTest() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.depth
}
