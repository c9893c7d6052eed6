package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/auth"
	"github.com/modelserver/modelserver/oip"
)

func TestStatusOf(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("context: %w", err) }
	tests := []struct {
		err  error
		want codes.Code
	}{
		{nil, codes.OK},
		{wrap(auth.ErrUnauthenticated), codes.Unauthenticated},
		{errNotReady, codes.Unavailable},
		{errShuttingDown, codes.Unavailable},
		{wrap(batching.ErrClosed), codes.Unavailable},
		{wrap(oip.ErrModelNotFound), codes.NotFound},
		{wrap(oip.ErrUnsupported), codes.Unimplemented},
		{wrap(engine.ErrInvalidInput), codes.InvalidArgument},
		{fmt.Errorf("%w: input %q: %w", engine.ErrInvalidInput, "x", oip.ErrUnsupportedDatatype), codes.InvalidArgument},
		{errInvalidParameter, codes.InvalidArgument},
		{wrap(batching.ErrQueueFull), codes.ResourceExhausted},
		{wrap(batching.ErrQueueTimeout), codes.ResourceExhausted},
		{wrap(context.DeadlineExceeded), codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{wrap(engine.ErrRuntime), codes.Internal},
		{errors.New("anything else"), codes.Internal},
		// A runtime error caused by cancellation is the cancellation.
		{fmt.Errorf("%w: %w", engine.ErrRuntime, context.Canceled), codes.Canceled},
		// Statuses from the gRPC library keep their code.
		{status.Error(codes.ResourceExhausted, "message too large"), codes.ResourceExhausted},
		{wrap(status.Error(codes.Unauthenticated, "no")), codes.Unauthenticated},
	}
	for _, tt := range tests {
		st := statusOf(tt.err)
		if st.Code() != tt.want {
			t.Errorf("statusOf(%v) = %v, want %v", tt.err, st.Code(), tt.want)
		}
		if tt.err != nil && st.Message() == "" {
			t.Errorf("statusOf(%v) has no message", tt.err)
		}
	}
}
