package codec

import (
	"errors"
	"fmt"
)

// ErrMalformed is wrapped by every decode error caused by the body, so that
// a server can answer 400 Bad Request. Test it with errors.Is.
var ErrMalformed = errors.New("malformed body")

// malformedError carries the message shown to the client, which must start
// with the Truss-style prefix rather than with ErrMalformed's text, while
// still matching ErrMalformed and any cause wrapped in err.
type malformedError struct{ err error }

func (e *malformedError) Error() string   { return e.err.Error() }
func (e *malformedError) Unwrap() []error { return []error{ErrMalformed, e.err} }

// malformed formats a client-facing error that wraps ErrMalformed. %w in
// format wraps a cause as fmt.Errorf does.
func malformed(format string, args ...any) error {
	return &malformedError{fmt.Errorf(format, args...)}
}

// inputError reports a problem with one named input of a predict body.
func inputError(name string, err error) error {
	return malformed("input %q: %w", name, err)
}
