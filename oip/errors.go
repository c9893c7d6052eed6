package oip

import (
	"context"
	"errors"
	"net/http"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/httpbody"
	"github.com/modelserver/modelserver/internal/shutdown"
)

// StatusClientClosedRequest is the de-facto status for a request whose
// client went away (nginx's 499); it is logged, never seen by the client.
const StatusClientClosedRequest = 499

// Errors produced by the HTTP transport itself.
var (
	errNotReady     = errors.New("model is not ready")
	errShuttingDown = shutdown.ErrShuttingDown
	errBodyTooLarge = httpbody.ErrTooLarge
	errClientGone   = httpbody.ErrClientGone
)

// httpStatus maps every error an OIP HTTP handler can meet to its status
// code. It is the only place that does; keep it table-tested. The body is
// always {"error": err.Error()}.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, errNotReady), errors.Is(err, errShuttingDown), errors.Is(err, batching.ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrModelNotFound):
		return http.StatusNotFound
	case errors.Is(err, errBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errClientGone):
		return StatusClientClosedRequest
	case errors.Is(err, ErrUnsupported):
		return http.StatusNotImplemented
	case errors.Is(err, engine.ErrInvalidInput):
		return http.StatusBadRequest
	case errors.Is(err, batching.ErrQueueFull), errors.Is(err, batching.ErrQueueTimeout):
		return http.StatusTooManyRequests
	case errors.Is(err, context.Canceled):
		return StatusClientClosedRequest
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	// engine.ErrRuntime and anything unexpected.
	return http.StatusInternalServerError
}
