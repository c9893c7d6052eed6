package batching

import "time"

// clock is the Batcher's time source; tests substitute a fake one (see
// export_test.go).
type clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once at deadline (at once if the
	// deadline has passed).
	NewTimer(deadline time.Time) timer
}

// timer is the part of *time.Timer the Batcher uses.
type timer interface {
	C() <-chan time.Time
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(deadline time.Time) timer {
	return realTimer{time.NewTimer(time.Until(deadline))}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }
