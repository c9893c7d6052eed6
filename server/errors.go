package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/codec"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/auth"
	"github.com/modelserver/modelserver/internal/httpbody"
	"github.com/modelserver/modelserver/internal/shutdown"
)

// Truss's error headers (truss-wire.md §1.1): the service id of the model
// server and who is to blame.
const (
	headerErrorSource = "X-BASETEN-ERROR-SOURCE"
	headerErrorCode   = "X-BASETEN-ERROR-CODE"
	errorSourceServer = "04"

	codeUnexpected = "500"
	codeModel      = "600"
	codeClient     = "700"
)

// StatusClientClosedRequest is the de-facto status for a request whose client
// went away (nginx's 499); it is logged and counted, never seen by the client.
const StatusClientClosedRequest = 499

// notReadyMessage must stay byte-for-byte Truss's: the Truss control proxy
// matches "model is not ready" in the body.
const notReadyMessage = "Model with name model is not ready."

// Errors produced by the transport itself.
var (
	errNotReady     = errors.New(notReadyMessage)
	errBodyTooLarge = httpbody.ErrTooLarge
	errClientGone   = httpbody.ErrClientGone
	errShuttingDown = shutdown.ErrShuttingDown
)

// apiError is an error as the HTTP transport answers it. outcome is the
// request-count metric's label for it.
type apiError struct {
	status  int
	code    string
	message string
	outcome string
}

// httpError maps every error a handler can meet to its status, Truss error
// code, message and outcome label. It is the only place that does; keep it
// table-tested.
func httpError(err error, maxBody int64) apiError {
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return apiError{http.StatusUnauthorized, codeClient, "Unauthorized: missing or invalid API key.", "unauthenticated"}
	case errors.Is(err, errNotReady):
		return apiError{http.StatusServiceUnavailable, codeModel, notReadyMessage, "not_ready"}
	case errors.Is(err, errShuttingDown), errors.Is(err, batching.ErrClosed):
		return apiError{http.StatusServiceUnavailable, codeModel, "Server is shutting down.", "not_ready"}
	case errors.Is(err, errBodyTooLarge):
		return apiError{http.StatusRequestEntityTooLarge, codeClient,
			fmt.Sprintf("Request body too large: the limit is %d bytes.", maxBody), "too_large"}
	case errors.Is(err, errClientGone):
		return apiError{StatusClientClosedRequest, codeModel, "Client disconnected while reading request.", "cancelled"}
	case errors.Is(err, codec.ErrMalformed), errors.Is(err, engine.ErrInvalidInput):
		return apiError{http.StatusBadRequest, codeClient, err.Error(), "invalid_input"}
	case errors.Is(err, batching.ErrQueueFull):
		return apiError{http.StatusTooManyRequests, codeModel, "Server overloaded: the request queue is full, retry later.", "queue_full"}
	case errors.Is(err, batching.ErrQueueTimeout):
		return apiError{http.StatusTooManyRequests, codeModel, "Server overloaded: the request waited too long in the queue, retry later.", "queue_timeout"}
	case errors.Is(err, context.Canceled):
		return apiError{StatusClientClosedRequest, codeModel, "Client disconnected, skipping `predict`.", "cancelled"}
	case errors.Is(err, context.DeadlineExceeded):
		return apiError{http.StatusGatewayTimeout, codeModel, "Predict deadline exceeded.", "deadline"}
	case errors.Is(err, errStreamStalled):
		return apiError{http.StatusGatewayTimeout, codeModel, errStreamStalled.Error(), "deadline"}
	case errors.Is(err, engine.ErrRuntime):
		return apiError{http.StatusInternalServerError, codeModel, err.Error(), "model_error"}
	}
	return apiError{http.StatusInternalServerError, codeUnexpected, "Unhandled exception: " + err.Error(), "error"}
}
