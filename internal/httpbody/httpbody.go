// Package httpbody reads HTTP request bodies whole, under a size limit, for
// the HTTP transports (server, oip). The returned slice is owned by the
// caller.
package httpbody

import (
	"bytes"
	"errors"
	"io"
	"net/http"
)

var (
	// ErrTooLarge means the body exceeds the limit (HTTP 413).
	ErrTooLarge = errors.New("request body too large")
	// ErrClientGone means the client disconnected while sending the body.
	ErrClientGone = errors.New("client disconnected while sending the request")
)

// Read reads r's body, refusing a Content-Length above limit before reading
// anything and stopping at limit bytes otherwise; it allocates once when the
// length is announced.
func Read(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, ErrTooLarge
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, ErrTooLarge
	case err != nil && r.Context().Err() != nil, errors.Is(err, io.ErrUnexpectedEOF):
		return nil, ErrClientGone
	case err != nil:
		return nil, err
	}
	return buf.Bytes(), nil
}
