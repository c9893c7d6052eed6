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
	tests := []struct {
		name string
		args []string
		// want* are what genai_config.json and config.json say.
		kvHeads     int
		positionIDs string
		shareBuffer bool
		torchDType  string
	}{
		{"int4 mha", []string{"--precision", "int4", "--attention", "mha"}, 4, "position_ids", false, "float32"},
		{"fp16 gqa", []string{"--precision", "fp16"}, 2, "", true, "float16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "phi3")
			args := append([]string{"gen-phi3", "--out", dir, "--seed", "5", "--context", "1024"}, tt.args...)
			out, err := exec.Command(serverBinary, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("gen-phi3 failed: %v\n%s", err, out)
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
			readJSON(t, filepath.Join(dir, "genai_config.json"), &cfg)
			if cfg.Model.ContextLength != 1024 || cfg.Model.Decoder.HiddenSize != 64 {
				t.Errorf("genai_config.json has context %d and hidden size %d, want 1024 and 64", cfg.Model.ContextLength, cfg.Model.Decoder.HiddenSize)
			}
			if d := cfg.Model.Decoder; d.NumKeyValueHeads != tt.kvHeads || d.Inputs.PositionIDs != tt.positionIDs || cfg.Search.PastPresentShareBuffer != tt.shareBuffer {
				t.Errorf("%q gave %d KV heads, position_ids %q and share buffer %v, want %d, %q and %v", tt.args,
					d.NumKeyValueHeads, d.Inputs.PositionIDs, cfg.Search.PastPresentShareBuffer, tt.kvHeads, tt.positionIDs, tt.shareBuffer)
			}
			var hf struct {
				TorchDType string `json:"torch_dtype"`
			}
			readJSON(t, filepath.Join(dir, "config.json"), &hf)
			if hf.TorchDType != tt.torchDType {
				t.Errorf("config.json has torch_dtype %q, want %q", hf.TorchDType, tt.torchDType)
			}
			for _, name := range []string{"model.onnx", "model.onnx.data", "tokenizer.json", "tokenizer_config.json"} {
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
