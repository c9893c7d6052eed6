package shutdown

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStopCancelsBound(t *testing.T) {
	s := NewStopper()
	ctx, release := s.Bind(context.Background())
	defer release()
	if Cancelled(ctx) || s.Stopped() {
		t.Fatal("cancelled before Stop")
	}
	s.Stop()
	<-ctx.Done()
	if !Cancelled(ctx) || !errors.Is(context.Cause(ctx), ErrShuttingDown) {
		t.Errorf("cause = %v, want ErrShuttingDown", context.Cause(ctx))
	}
	late, release2 := s.Bind(context.Background())
	defer release2()
	<-late.Done()
	if !Cancelled(late) {
		t.Errorf("context bound after Stop: cause %v", context.Cause(late))
	}
}

func TestReleaseIsNotShutdown(t *testing.T) {
	s := NewStopper()
	parent, cancel := context.WithCancel(context.Background())
	ctx, release := s.Bind(parent)
	cancel()
	<-ctx.Done()
	if Cancelled(ctx) {
		t.Error("a client cancellation counts as shutdown")
	}
	release()
	s.Stop()
	if Cancelled(ctx) {
		t.Error("Stop after release changed the cause")
	}
}
