package auth

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	keys, err := NewKeys([]string{"key-one", "second-key-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		authorization string
		ok            bool
	}{
		{"Api-Key key-one", true},
		{"Bearer key-one", true},
		{"bearer second-key-0123456789", true},
		{"API-KEY  key-one ", true},
		{"Api-Key key-on", false},
		{"Api-Key key-one1", false},
		{"Basic key-one", false},
		{"key-one", false},
		{"Bearer", false},
		{"Bearer ", false},
		{"", false},
	}
	for _, tt := range tests {
		err := keys.Check(tt.authorization)
		if tt.ok && err != nil {
			t.Errorf("Check(%q) = %v, want nil", tt.authorization, err)
		}
		if !tt.ok && !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Check(%q) = %v, want ErrUnauthenticated", tt.authorization, err)
		}
		if err != nil && strings.Contains(err.Error(), "key-one") {
			t.Errorf("Check(%q) error %q names a key", tt.authorization, err)
		}
	}
}

func TestNoKeys(t *testing.T) {
	var nilKeys *Keys
	empty, err := NewKeys(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*Keys{nilKeys, empty} {
		if k.Enabled() {
			t.Error("Enabled() = true with no keys")
		}
		if err := k.Check("Bearer anything"); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Check with no keys = %v, want ErrUnauthenticated", err)
		}
	}
}

func TestNewKeysRejects(t *testing.T) {
	for _, key := range []string{"", "a b", "a,b", "a\tb", "a\x7fb"} {
		_, err := NewKeys([]string{"good", key})
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("NewKeys(%q) = %v, want ErrInvalidKey", key, err)
		}
		if key != "" && strings.Contains(err.Error(), key) {
			t.Errorf("NewKeys error %q quotes the key", err)
		}
	}
}

func TestParseKeys(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"a,b", []string{"a", "b"}},
		{" a \n\n# comment, not a key\nb , c\n", []string{"a", "b", "c"}},
		{"", nil},
		{"\n,\n", nil},
	}
	for _, tt := range tests {
		if got := ParseKeys(tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("ParseKeys(%q) = %q, want %q", tt.text, got, tt.want)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("Bearer k", "k")
	f.Add("Api-Key  k", "k")
	f.Fuzz(func(t *testing.T, authorization, key string) {
		keys, err := NewKeys([]string{key})
		if err != nil {
			return
		}
		err = keys.Check(authorization)
		want, ok := credential(authorization)
		if (err == nil) != (ok && want == key) {
			t.Errorf("Check(%q) with key %q = %v", authorization, key, err)
		}
	})
}

func FuzzParseKeys(f *testing.F) {
	f.Add("a,b\n# c\n d ")
	f.Fuzz(func(t *testing.T, text string) {
		for _, key := range ParseKeys(text) {
			if key == "" || key != strings.TrimSpace(key) || strings.ContainsAny(key, ",\n") {
				t.Errorf("ParseKeys(%q) returned %q", text, key)
			}
		}
	})
}
