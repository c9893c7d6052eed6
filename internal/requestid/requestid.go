// Package requestid carries a request's id through its context so that every
// log line about the request, on every transport, names it.
//
// The id comes from the client (Baseten's x-baseten-request-id, else
// X-Request-Id) when it is a plausible id, and is generated otherwise;
// transports echo it back in X-Request-Id. All functions are safe for
// concurrent use.
package requestid

import (
	"context"

	"github.com/google/uuid"
)

// Headers (and lower-case gRPC metadata keys) that carry a request id.
const (
	// HeaderBaseten is set by Baseten's gateway; Truss logs it as request_id.
	HeaderBaseten = "X-Baseten-Request-Id"
	// Header is the common request id header; transports echo the id in it.
	Header = "X-Request-Id"
)

// MaxLength is the longest id accepted from a client; a longer one is
// replaced by a generated id so that a client cannot flood the logs.
const MaxLength = 128

// Pick returns the id a client sent through get (a header or metadata
// lookup), trying HeaderBaseten then Header, or a new id when neither holds
// a valid one.
func Pick(get func(key string) string) string {
	for _, key := range []string{HeaderBaseten, Header} {
		if id := get(key); Valid(id) {
			return id
		}
	}
	return New()
}

// New returns a fresh random id (a UUID).
func New() string { return uuid.NewString() }

// Valid reports whether id is 1 to MaxLength printable ASCII characters
// without spaces, so that it can be logged and echoed in a header as is.
func Valid(id string) bool {
	if id == "" || len(id) > MaxLength {
		return false
	}
	for i := range len(id) {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

type key struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, key{}, id)
}

// FromContext returns the id ctx carries, or "".
func FromContext(ctx context.Context) string {
	id, _ := ctx.Value(key{}).(string)
	return id
}
