package models

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/modelserver/modelserver/config"
)

func TestResolveBuiltin(t *testing.T) {
	a, err := Resolve(DefaultModel)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Resolve(DefaultModel)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.ONNX) == 0 || !bytes.Equal(a.ONNX, b.ONNX) || a.ONNXPath != "" {
		t.Errorf("built-in model is empty or not deterministic (%d, %d bytes)", len(a.ONNX), len(b.ONNX))
	}
	if a.Config.ModelName != DefaultModel || !cmp.Equal(a.Config.Runtime, config.Defaults().Runtime) {
		t.Errorf("built-in config = %+v", a.Config)
	}
}

func TestResolveDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "config.yaml", "model_name: tiny\n")
	write(t, dir, "model.onnx", "onnx bytes are checked by the engine")
	src, err := Resolve(dir)
	if err != nil {
		t.Fatal(err)
	}
	if src.ONNXPath != filepath.Join(dir, "model.onnx") || src.Config.ModelName != "tiny" || src.ONNX != nil {
		t.Errorf("Resolve(dir) = %+v", src)
	}
}

func TestResolveErrors(t *testing.T) {
	noConfig := t.TempDir()
	write(t, noConfig, "model.onnx", "x")
	noModel := t.TempDir()
	write(t, noModel, "config.yaml", "model_name: x\n")
	badYAML := t.TempDir()
	write(t, badYAML, "config.yaml", "model_name: [\n")
	write(t, badYAML, "model.onnx", "x")
	modelIsDir := t.TempDir()
	write(t, modelIsDir, "config.yaml", "")
	os.Mkdir(filepath.Join(modelIsDir, "model.onnx"), 0o755)
	file := filepath.Join(noModel, "config.yaml")

	tests := []struct {
		ref, want string
		is        error
	}{
		{"/does/not/exist", "not a directory or a built-in model (built-ins: mlp-classifier, mlp-large, rnn-stream)", ErrNotFound},
		{file, "is a file", ErrNotFound},
		{noConfig, "has no config.yaml", ErrNotFound},
		{noModel, "has no model.onnx", ErrNotFound},
		{badYAML, "config.yaml", config.ErrInvalid},
		{modelIsDir, "is a directory, not an ONNX file", ErrNotFound},
	}
	for _, tt := range tests {
		_, err := Resolve(tt.ref)
		if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Resolve(%q) = %v, want %v containing %q", tt.ref, err, tt.is, tt.want)
		}
	}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
