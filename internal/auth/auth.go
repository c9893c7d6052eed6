// Package auth checks API keys: a request carries
// "Authorization: Api-Key <key>" or "Authorization: Bearer <key>" (gRPC:
// metadata "authorization"), and it passes when the key is one of the
// configured keys.
//
// Keys are kept only as SHA-256 digests and a presented key is compared with
// every digest in constant time, so neither the comparison's duration nor an
// error tells which keys exist or how long they are. Keys are safe for
// concurrent use.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
)

// ErrUnauthenticated: the request carries no key, a malformed
// Authorization value or a key that is not configured. HTTP 401, gRPC
// UNAUTHENTICATED. It deliberately says nothing about which.
var ErrUnauthenticated = errors.New("missing or invalid API key")

// ErrInvalidKey: a configured key is empty or contains white space or a
// comma, which no Authorization header could carry.
var ErrInvalidKey = errors.New("invalid API key")

// Keys is a set of accepted API keys. The zero value and nil accept nothing
// and report Enabled false.
type Keys struct {
	digests [][sha256.Size]byte
}

// NewKeys returns the set of keys; an empty list gives a set that is not
// Enabled. A key that is empty or holds white space or a comma fails with
// ErrInvalidKey (the error does not quote the key).
func NewKeys(keys []string) (*Keys, error) {
	k := &Keys{}
	for i, key := range keys {
		if key == "" || strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r == ',' || r == 0x7f }) {
			return nil, fmt.Errorf("%w: key %d of %d is empty or holds white space, a comma or a control character", ErrInvalidKey, i+1, len(keys))
		}
		k.digests = append(k.digests, sha256.Sum256([]byte(key)))
	}
	return k, nil
}

// ParseKeys splits the text of a key file or environment variable into
// keys: separated by newlines or commas, surrounding white space trimmed,
// empty entries and lines starting with # skipped.
func ParseKeys(text string) []string {
	var keys []string
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		for key := range strings.SplitSeq(line, ",") {
			if key = strings.TrimSpace(key); key != "" {
				keys = append(keys, key)
			}
		}
	}
	return keys
}

// Enabled reports whether any key is configured; when none is, transports
// serve without authentication.
func (k *Keys) Enabled() bool { return k != nil && len(k.digests) > 0 }

// Check returns nil when authorization (an Authorization header or
// metadata value) carries an accepted key, else ErrUnauthenticated. The
// scheme, Api-Key or Bearer, is case-insensitive.
func (k *Keys) Check(authorization string) error {
	key, ok := credential(authorization)
	if !ok || !k.Enabled() {
		return ErrUnauthenticated
	}
	digest := sha256.Sum256([]byte(key))
	match := 0
	for i := range k.digests {
		match |= subtle.ConstantTimeCompare(digest[:], k.digests[i][:])
	}
	if match != 1 {
		return ErrUnauthenticated
	}
	return nil
}

// credential returns the key of "Api-Key <key>" or "Bearer <key>".
func credential(authorization string) (string, bool) {
	scheme, key, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !(strings.EqualFold(scheme, "Api-Key") || strings.EqualFold(scheme, "Bearer")) {
		return "", false
	}
	key = strings.TrimSpace(key)
	return key, key != ""
}
