package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelserver/modelserver/internal/auth"
)

func TestLoadAPIKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, empty, bad := write("good", "# keys\nfile-a\nfile-b, file-c\n"), write("empty", "# none\n\n"), write("bad", "a key with spaces\n")
	tests := []struct {
		name, file, env string
		accepts         []string
		enabled         bool
		wantErr         string
	}{
		{name: "none"},
		{name: "env only", env: "e1, e2", accepts: []string{"e1", "e2"}, enabled: true},
		{name: "file and env", file: good, env: "e1", accepts: []string{"e1", "file-a", "file-c"}, enabled: true},
		{name: "missing file", file: filepath.Join(dir, "nope"), wantErr: "--api-keys-file"},
		{name: "empty file", file: empty, wantErr: "holds no key"},
		{name: "key with spaces", file: bad, wantErr: "invalid API key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := loadAPIKeys(tt.file, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadAPIKeys = %v, want an error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "spaces") {
					t.Errorf("error %q quotes the key", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if keys.Enabled() != tt.enabled {
				t.Errorf("Enabled = %v, want %v", keys.Enabled(), tt.enabled)
			}
			for _, k := range tt.accepts {
				if err := keys.Check("Bearer " + k); err != nil {
					t.Errorf("key %q refused: %v", k, err)
				}
			}
			if err := keys.Check("Bearer other"); !errors.Is(err, auth.ErrUnauthenticated) {
				t.Errorf("unknown key: %v", err)
			}
		})
	}
}

func TestSplitList(t *testing.T) {
	tests := map[string][]string{
		"":                        {},
		"GET /a, GET /b ,":        {"GET /a", "GET /b"},
		"/grpc.health.v1.Health/": {"/grpc.health.v1.Health/"},
	}
	for in, want := range tests {
		if got := splitList(in); got == nil || !slices.Equal(got, want) {
			t.Errorf("splitList(%q) = %#v, want %#v", in, got, want)
		}
	}
}

func TestOperabilityFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{nil, ""},
		{[]string{"--read-header-timeout", "0s"}, "--read-header-timeout"},
		{[]string{"--idle-timeout", "-1s"}, "--idle-timeout"},
		{[]string{"--max-header-bytes", "0"}, "--max-header-bytes"},
		{[]string{"--max-connections", "-1"}, "--max-connections"},
		{[]string{"--max-connections", "0"}, ""},
		{[]string{"--grpc-max-concurrent-streams", "0"}, "--grpc-max-concurrent-streams"},
	}
	for _, tt := range tests {
		f, err := parseFlags(tt.args, io.Discard)
		if err == nil {
			err = f.limits.check()
		}
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("flags %q: %v, want error %q", tt.args, err, tt.wantErr)
		}
	}
	f, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if l := f.limits; l.readHeaderTimeout != defaultReadHeaderTimeout || l.maxConnections != defaultMaxConnections || l.maxHeaderBytes != 1<<20 {
		t.Errorf("default limits %+v", l)
	}
}

func TestNewLoggerFormats(t *testing.T) {
	for _, tt := range []struct {
		format, wantPrefix string
	}{{"auto", `{"time":`}, {"json", `{"time":`}, {"text", "time="}} {
		var buf bytes.Buffer
		log, err := newLogger(tt.format, &buf)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("hello")
		if !strings.HasPrefix(buf.String(), tt.wantPrefix) {
			t.Errorf("--log-format %s wrote %q, want a line starting %q", tt.format, buf.String(), tt.wantPrefix)
		}
	}
	if _, err := newLogger("xml", io.Discard); err == nil {
		t.Error("--log-format xml accepted")
	}
}
