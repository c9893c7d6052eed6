package httpbody

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

type truncated struct{ r io.Reader }

func (t truncated) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func TestRead(t *testing.T) {
	tests := []struct {
		name          string
		body          io.Reader
		contentLength int64
		limit         int64
		want          string
		err           error
	}{
		{"whole body", strings.NewReader("hello"), 5, 10, "hello", nil},
		{"unknown length", strings.NewReader("hello"), -1, 10, "hello", nil},
		{"exactly the limit", strings.NewReader("hello"), 5, 5, "hello", nil},
		{"announced above the limit", strings.NewReader("hello"), 5, 4, "", ErrTooLarge},
		{"streamed above the limit", strings.NewReader("hello world"), -1, 4, "", ErrTooLarge},
		{"client gone mid-body", truncated{strings.NewReader("hel")}, 5, 10, "", ErrClientGone},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/", tt.body)
		r.ContentLength = tt.contentLength
		got, err := Read(httptest.NewRecorder(), r, tt.limit)
		if !errors.Is(err, tt.err) || string(got) != tt.want {
			t.Errorf("%s: Read = %q, %v; want %q, %v", tt.name, got, err, tt.want, tt.err)
		}
	}
}
