package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenPhi3Flags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no out", nil, "--out is required"},
		{"unknown preset", []string{"--out", "x", "--preset", "huge"}, `--preset "huge"`},
		{"unknown precision", []string{"--out", "x", "--precision", "fp8"}, `precision "fp8"`},
		{"context not positive", []string{"--out", "x", "--context", "-1"}, "sizes must be positive"},
		{"unknown attention", []string{"--out", "x", "--attention", "flash"}, `attention "flash"`},
		{"stray argument", []string{"--out", "x", "extra"}, `unexpected argument "extra"`},
		{"unknown flag", []string{"--bogus"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string(nil), tt.args...)
			for i, a := range args {
				if a == "x" {
					args[i] = filepath.Join(t.TempDir(), "m")
				}
			}
			var stderr bytes.Buffer
			err := runGenPhi3(args, io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error()+stderr.String(), tt.want) {
				t.Errorf("runGenPhi3(%q) = %v (stderr %q), want an error containing %q", tt.args, err, stderr.String(), tt.want)
			}
		})
	}
	if err := runGenPhi3([]string{"--help"}, io.Discard, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help gives %v, want flag.ErrHelp", err)
	}
}

// TestGenPhi3Command runs the subcommand through the binary and checks that
// the flags reach the written configuration.
func TestGenPhi3Command(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "phi3")
	out, err := exec.Command(serverBinary, "gen-phi3", "--out", dir, "--precision", "int4", "--attention", "mha", "--seed", "5", "--context", "1024").CombinedOutput()
	if err != nil {
		t.Fatalf("gen-phi3 failed: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "genai_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Model struct {
			ContextLength int `json:"context_length"`
			Decoder       struct {
				HiddenSize       int `json:"hidden_size"`
				NumKeyValueHeads int `json:"num_key_value_heads"`
				Inputs           struct {
					PositionIDs string `json:"position_ids"`
				} `json:"inputs"`
			} `json:"decoder"`
		} `json:"model"`
		Search struct {
			PastPresentShareBuffer bool `json:"past_present_share_buffer"`
		} `json:"search"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Model.ContextLength != 1024 || cfg.Model.Decoder.HiddenSize != 64 {
		t.Errorf("genai_config.json has context %d and hidden size %d, want 1024 and 64", cfg.Model.ContextLength, cfg.Model.Decoder.HiddenSize)
	}
	if d := cfg.Model.Decoder; d.NumKeyValueHeads != 4 || d.Inputs.PositionIDs != "position_ids" || cfg.Search.PastPresentShareBuffer {
		t.Errorf("--attention mha gave %d KV heads, position_ids %q and share buffer %v, want 4, position_ids and false",
			d.NumKeyValueHeads, d.Inputs.PositionIDs, cfg.Search.PastPresentShareBuffer)
	}
	for _, name := range []string{"model.onnx", "model.onnx.data", "tokenizer.json", "tokenizer_config.json", "config.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
}
