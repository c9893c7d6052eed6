package grpcserver

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/auth"
	"github.com/modelserver/modelserver/internal/shutdown"
	"github.com/modelserver/modelserver/oip"
)

// Errors produced by the transport itself.
var (
	errNotReady     = errors.New("model is not ready")
	errShuttingDown = shutdown.ErrShuttingDown
)

// statusOf maps every error a handler can meet to its gRPC status. It is
// the only place that does; keep it table-tested. An error that already
// carries a status (from the gRPC library) keeps it.
func statusOf(err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	var grpcErr interface{ GRPCStatus() *status.Status }
	if errors.As(err, &grpcErr) {
		return grpcErr.GRPCStatus()
	}
	return status.New(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return codes.Unauthenticated
	case errors.Is(err, errNotReady), errors.Is(err, errShuttingDown), errors.Is(err, batching.ErrClosed):
		return codes.Unavailable
	case errors.Is(err, oip.ErrModelNotFound):
		return codes.NotFound
	case errors.Is(err, oip.ErrUnsupported):
		return codes.Unimplemented
	case errors.Is(err, engine.ErrInvalidInput):
		return codes.InvalidArgument
	case errors.Is(err, batching.ErrQueueFull), errors.Is(err, batching.ErrQueueTimeout):
		return codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	// engine.ErrRuntime and anything unexpected: the server's fault.
	return codes.Internal
}

// errInvalidParameter wraps a request parameter of the wrong type.
var errInvalidParameter = fmt.Errorf("%w: invalid parameter", engine.ErrInvalidInput)
