package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/modelserver/modelserver/codec"
	"github.com/modelserver/modelserver/engine"
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
	errNotReady      = errors.New(notReadyMessage)
	errBodyTooLarge  = errors.New("request body too large")
	errClientGone    = errors.New("Client disconnected while reading request.")
	errShuttingDown  = errors.New("server is shutting down")
	errNoSchemaFound = errors.New("No schema found")
)

// apiError is an error as the HTTP transport answers it.
type apiError struct {
	status  int
	code    string
	message string
}

// httpError maps every error a handler can meet to its status, Truss error
// code and message. It is the only place that does; keep it table-tested.
func httpError(err error, maxBody int64) apiError {
	switch {
	case errors.Is(err, errNotReady):
		return apiError{http.StatusServiceUnavailable, codeModel, notReadyMessage}
	case errors.Is(err, errShuttingDown):
		return apiError{http.StatusServiceUnavailable, codeModel, "Server is shutting down."}
	case errors.Is(err, errBodyTooLarge):
		return apiError{http.StatusRequestEntityTooLarge, codeClient,
			fmt.Sprintf("Request body too large: the limit is %d bytes.", maxBody)}
	case errors.Is(err, errClientGone):
		return apiError{StatusClientClosedRequest, codeModel, errClientGone.Error()}
	case errors.Is(err, codec.ErrMalformed), errors.Is(err, engine.ErrInvalidInput):
		return apiError{http.StatusBadRequest, codeClient, err.Error()}
	case errors.Is(err, context.Canceled):
		return apiError{StatusClientClosedRequest, codeModel, "Client disconnected, skipping `predict`."}
	case errors.Is(err, context.DeadlineExceeded):
		return apiError{http.StatusGatewayTimeout, codeModel, "Predict deadline exceeded."}
	case errors.Is(err, engine.ErrRuntime):
		return apiError{http.StatusInternalServerError, codeModel, err.Error()}
	case errors.Is(err, errNoSchemaFound):
		return apiError{http.StatusNotFound, codeModel, errNoSchemaFound.Error()}
	}
	return apiError{http.StatusInternalServerError, codeUnexpected, "Unhandled exception: " + err.Error()}
}
