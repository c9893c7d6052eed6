package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/modelserver/modelserver/internal/shutdown"
	"github.com/modelserver/modelserver/llm"
)

// Errors produced by the API itself.
var (
	// ErrNotReady: no model is set yet (HTTP 503).
	ErrNotReady = errors.New("the model is loading, retry later")
	// ErrInvalidRequest: the request body or one of its fields is invalid
	// (HTTP 400). Errors for one field are *FieldError.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrModelNotFound: the request names a model this server does not
	// serve (HTTP 404).
	ErrModelNotFound = errors.New("model not found")
	// ErrPromptRejected: the model's chat template refused the messages
	// (HTTP 400). Model implementations wrap template errors with it.
	ErrPromptRejected = errors.New("the chat template rejected the messages")
)

// FieldError is an invalid value of one request field. It matches
// ErrInvalidRequest with errors.Is.
type FieldError struct {
	Param   string // the field, e.g. "temperature" or "messages[1].role"
	Message string
}

func (e *FieldError) Error() string { return e.Message }

// Is makes every FieldError an ErrInvalidRequest.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidRequest }

func fieldErrorf(param, format string, args ...any) *FieldError {
	return &FieldError{Param: param, Message: fmt.Sprintf(format, args...)}
}

// StatusClientClosedRequest is the status logged for a request whose client
// went away (nginx's 499); the client never sees it.
const StatusClientClosedRequest = 499

// OpenAI error types and codes.
const (
	typeInvalidRequest = "invalid_request_error"
	typeRateLimit      = "rate_limit_error"
	typeServer         = "server_error"

	codeInvalidValue    = "invalid_value"
	codeModelNotFound   = "model_not_found"
	codeContextLength   = "context_length_exceeded"
	codeRateLimit       = "rate_limit_exceeded"
	codeUnavailable     = "service_unavailable"
	codeRequestTooLarge = "request_too_large"
	codeClientClosed    = "client_closed_request"
	codeTimeout         = "timeout"
	codeInternal        = "internal_error"
)

// apiError is an error as the API answers it: an HTTP status and OpenAI's
// error object.
type apiError struct {
	Status  int
	Type    string
	Code    string
	Param   string
	Message string
}

// apiErrorFor maps every error a handler can meet to its status and OpenAI
// error fields. It is the only place that does; keep it table-tested.
func apiErrorFor(err error) apiError {
	var field *FieldError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &field):
		return apiError{http.StatusBadRequest, typeInvalidRequest, codeInvalidValue, field.Param, field.Message}
	case errors.As(err, &tooLarge):
		return apiError{http.StatusRequestEntityTooLarge, typeInvalidRequest, codeRequestTooLarge, "",
			fmt.Sprintf("Request body too large: the limit is %d bytes.", tooLarge.Limit)}
	case errors.Is(err, ErrInvalidRequest), errors.Is(err, llm.ErrInvalidParams), errors.Is(err, ErrPromptRejected):
		return apiError{http.StatusBadRequest, typeInvalidRequest, codeInvalidValue, "", err.Error()}
	case errors.Is(err, llm.ErrContextLength):
		return apiError{http.StatusBadRequest, typeInvalidRequest, codeContextLength, "", err.Error()}
	case errors.Is(err, ErrModelNotFound):
		return apiError{http.StatusNotFound, typeInvalidRequest, codeModelNotFound, "model", err.Error()}
	case errors.Is(err, llm.ErrQueueFull):
		return apiError{http.StatusTooManyRequests, typeRateLimit, codeRateLimit, "",
			"Server overloaded: the request queue is full, retry later."}
	case errors.Is(err, ErrNotReady):
		return apiError{http.StatusServiceUnavailable, typeServer, codeUnavailable, "", "The model is loading, retry later."}
	case errors.Is(err, llm.ErrClosed):
		return apiError{http.StatusServiceUnavailable, typeServer, codeUnavailable, "", "The model is shutting down."}
	case errors.Is(err, shutdown.ErrShuttingDown):
		return apiError{http.StatusServiceUnavailable, typeServer, codeUnavailable, "", "The server is shutting down."}
	case errors.Is(err, context.Canceled):
		return apiError{StatusClientClosedRequest, typeInvalidRequest, codeClientClosed, "", "The client closed the request."}
	case errors.Is(err, context.DeadlineExceeded):
		return apiError{http.StatusGatewayTimeout, typeServer, codeTimeout, "", "The request deadline passed."}
	}
	return apiError{http.StatusInternalServerError, typeServer, codeInternal, "", "Internal error: " + err.Error()}
}

// errorBody is OpenAI's error object; param and code are null when unset.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e apiError) body() errorBody {
	return errorBody{errorObject{Message: e.Message, Type: e.Type, Param: nullable(e.Param), Code: nullable(e.Code)}}
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
