package requestid

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

func TestPick(t *testing.T) {
	tests := []struct {
		name    string
		headers map[string]string
		want    string // "" means a generated id
	}{
		{"baseten wins", map[string]string{HeaderBaseten: "b-1", Header: "x-1"}, "b-1"},
		{"x-request-id", map[string]string{Header: "x-1"}, "x-1"},
		{"invalid baseten falls back", map[string]string{HeaderBaseten: "has space", Header: "x-1"}, "x-1"},
		{"none", nil, ""},
		{"too long", map[string]string{Header: strings.Repeat("a", MaxLength+1)}, ""},
		{"control character", map[string]string{Header: "a\nb"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.headers {
				h.Set(k, v)
			}
			got := Pick(h.Get)
			if tt.want != "" && got != tt.want {
				t.Errorf("Pick = %q, want %q", got, tt.want)
			}
			if tt.want == "" && (!Valid(got) || len(got) != 36) {
				t.Errorf("Pick = %q, want a generated UUID", got)
			}
		})
	}
}

func TestContext(t *testing.T) {
	ctx := context.Background()
	if got := FromContext(ctx); got != "" {
		t.Errorf("FromContext(empty) = %q, want \"\"", got)
	}
	if got := FromContext(NewContext(ctx, "abc")); got != "abc" {
		t.Errorf("FromContext = %q, want abc", got)
	}
}

func FuzzValid(f *testing.F) {
	f.Add("abc")
	f.Add("a b")
	f.Fuzz(func(t *testing.T, id string) {
		if !Valid(id) {
			return
		}
		h := http.Header{}
		h.Set(Header, id)
		if got := Pick(h.Get); got != id {
			t.Errorf("Pick(%q) = %q", id, got)
		}
	})
}
