package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/modelserver/modelserver/internal/onnxgen"
)

func TestBenchLLMFlagErrors(t *testing.T) {
	tests := map[string][]string{
		"--model DIR is required":               {},
		"is not a positive integer":             {"--model", "x", "--concurrency", "1,0"},
		"--tokens must be at least 3":           {"--model", "x", "--tokens", "2"},
		"--prompt-tokens and --repeat positive": {"--model", "x", "--repeat", "0"},
	}
	for want, args := range tests {
		if err := runBenchLLM(args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("runBenchLLM(%q) = %v, want an error containing %q", args, err, want)
		}
	}
}

// TestBenchLLM runs the benchmark briefly on the tiny model and checks the
// table has a row per concurrency.
func TestBenchLLM(t *testing.T) {
	lib := ortLibrary(t)
	dir := t.TempDir()
	if err := onnxgen.WritePhi3Dir(dir, onnxgen.Phi3Tiny()); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	args := []string{"--model", dir, "--onnxruntime-lib", lib, "--concurrency", "1,3", "--tokens", "4", "--prompt-tokens", "5", "--repeat", "1", "--intra-op-threads", "1", "--api"}
	if err := runBenchLLM(args, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) < 3 || !strings.Contains(lines[0], "engine tok/s") ||
		!strings.HasPrefix(strings.TrimSpace(lines[1]), "1 ") || !strings.HasPrefix(strings.TrimSpace(lines[2]), "3 ") {
		t.Errorf("output:\n%s", out.String())
	}
	for _, want := range []string{"api/engine c=1: ", "api/engine c=3: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
