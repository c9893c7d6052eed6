package oip

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
)

func TestHTTPStatus(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("context: %w", err) }
	tests := []struct {
		err  error
		want int
	}{
		{errNotReady, http.StatusServiceUnavailable},
		{errShuttingDown, http.StatusServiceUnavailable},
		{wrap(batching.ErrClosed), http.StatusServiceUnavailable},
		{wrap(ErrModelNotFound), http.StatusNotFound},
		{errBodyTooLarge, http.StatusRequestEntityTooLarge},
		{errClientGone, StatusClientClosedRequest},
		{wrap(ErrUnsupported), http.StatusNotImplemented},
		{wrap(engine.ErrInvalidInput), http.StatusBadRequest},
		{fmt.Errorf("%w: input %q: %w", engine.ErrInvalidInput, "x", ErrUnsupportedDatatype), http.StatusBadRequest},
		{wrap(batching.ErrQueueFull), http.StatusTooManyRequests},
		{wrap(batching.ErrQueueTimeout), http.StatusTooManyRequests},
		{context.Canceled, StatusClientClosedRequest},
		{wrap(context.DeadlineExceeded), http.StatusGatewayTimeout},
		{wrap(engine.ErrRuntime), http.StatusInternalServerError},
		{errors.New("anything else"), http.StatusInternalServerError},
		// A runtime error caused by cancellation is the cancellation.
		{fmt.Errorf("%w: %w", engine.ErrRuntime, context.Canceled), StatusClientClosedRequest},
	}
	for _, tt := range tests {
		if got := httpStatus(tt.err); got != tt.want {
			t.Errorf("httpStatus(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
