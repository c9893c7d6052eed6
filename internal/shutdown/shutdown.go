// Package shutdown ends the requests still in flight when a server's grace
// period runs out: each transport binds its requests' contexts to one
// Stopper, and Stop cancels all of them with ErrShuttingDown as the cause,
// so that handlers answer "shutting down" (HTTP 503, gRPC UNAVAILABLE,
// WebSocket 1001) instead of taking the cancellation for a client that left.
// A Stopper is safe for concurrent use.
package shutdown

import (
	"context"
	"errors"
)

// ErrShuttingDown is the cause of contexts a Stopper cancelled, and the
// error transports answer new requests with while they drain.
var ErrShuttingDown = errors.New("server is shutting down")

// Stopper cancels every context bound to it at once.
type Stopper struct {
	ctx    context.Context //nolint:containedctx // the one context every bound context follows
	cancel context.CancelCauseFunc
}

// NewStopper returns a Stopper that has not stopped.
func NewStopper() *Stopper {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Stopper{ctx: ctx, cancel: cancel}
}

// Bind returns a child of ctx that Stop cancels with ErrShuttingDown. Call
// release when the request is over.
func (s *Stopper) Bind(ctx context.Context) (bound context.Context, release func()) {
	bound, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.ctx, func() { cancel(ErrShuttingDown) })
	return bound, func() {
		stop()
		cancel(nil)
	}
}

// Stop cancels every bound context, now and from now on. It is idempotent.
func (s *Stopper) Stop() { s.cancel(ErrShuttingDown) }

// Stopped reports whether Stop has been called.
func (s *Stopper) Stopped() bool { return s.ctx.Err() != nil }

// Cancelled reports whether ctx ended because a Stopper stopped.
func Cancelled(ctx context.Context) bool {
	return ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrShuttingDown)
}
