package models

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/modelserver/modelserver/hub"
	"github.com/modelserver/modelserver/hub/hubtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	phi3CPU    = "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4"
	phi3CUDA   = "cuda/cuda-fp16"
	fakeCommit = "89abcdef0123456789abcdef0123456789abcdef"
)

// phi3Files is a miniature of the Phi-3 repository: the real folder and
// file names with tiny contents.
func phi3Files() []hubtest.File {
	var files []hubtest.File
	for _, v := range []struct{ dir, onnx string }{
		{phi3CPU, "phi3-mini-4k-instruct-cpu-int4-rtn-block-32-acc-level-4.onnx"},
		{phi3CUDA, "phi3-mini-4k-instruct-cuda-fp16.onnx"},
	} {
		files = append(files,
			hubtest.File{Path: v.dir + "/" + GenAIConfigFile, Data: []byte(`{"model":{"type":"phi3","decoder":{"filename":"` + v.onnx + `"}}}`)},
			hubtest.File{Path: v.dir + "/" + TokenizerFile, Data: []byte(`{"version":"1.0"}`)},
			hubtest.File{Path: v.dir + "/tokenizer_config.json", Data: []byte(`{}`)},
			hubtest.File{Path: v.dir + "/" + v.onnx, Data: []byte("graph " + v.dir), LFS: true},
			hubtest.File{Path: v.dir + "/" + v.onnx + ".data", Data: []byte(strings.Repeat("w", 4096)), LFS: true},
		)
	}
	return append(files, hubtest.File{Path: "README.md", Data: []byte("# Phi-3\n")})
}

func newPhi3Hub(t *testing.T) *hubtest.Server {
	t.Helper()
	srv := hubtest.NewServer(hubtest.Options{Repo: Phi3Repo, Commit: fakeCommit, Files: phi3Files()})
	t.Cleanup(srv.Close)
	return srv
}

func newHubClient(t *testing.T, srv *hubtest.Server, cache string, offline bool) *hub.Client {
	t.Helper()
	c, err := hub.New(hub.Options{
		Endpoint: srv.URL(), CacheDir: cache, HTTPClient: srv.Client(), Offline: offline,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RetryBackoff: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func llmContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// writeGenAI writes a minimal genai directory; skip leaves a file out.
func writeGenAI(t *testing.T, dir, skip string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		GenAIConfigFile: `{"model":{"decoder":{"filename":"model.onnx"}}}`,
		TokenizerFile:   `{}`,
		"model.onnx":    "graph",
	} {
		if name != skip {
			write(t, dir, name, data)
		}
	}
}

func TestResolveLLMDownload(t *testing.T) {
	tests := []struct {
		name    string
		ref     string
		opts    LLMOptions
		variant string
	}{
		{name: "alias on cpu", ref: Phi3, variant: phi3CPU},
		{name: "default device is cpu", ref: Phi3, opts: LLMOptions{Device: ""}, variant: phi3CPU},
		{name: "alias on cuda", ref: Phi3, opts: LLMOptions{Device: "cuda"}, variant: phi3CUDA},
		{name: "device index", ref: Phi3, opts: LLMOptions{Device: "cuda:1"}, variant: phi3CUDA},
		{name: "repository id", ref: Phi3Repo, opts: LLMOptions{Device: "cpu"}, variant: phi3CPU},
		{name: "variant override", ref: Phi3, opts: LLMOptions{Device: "cpu", Variant: phi3CUDA + "/"}, variant: phi3CUDA},
		{name: "commit revision", ref: Phi3, opts: LLMOptions{Revision: fakeCommit}, variant: phi3CPU},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newPhi3Hub(t)
			cache := t.TempDir()
			opts := tt.opts
			opts.Hub = newHubClient(t, srv, cache, false)
			dir, err := ResolveLLM(llmContext(t), tt.ref, opts)
			if err != nil {
				t.Fatal(err)
			}
			want := filepath.Join(cache, "models--microsoft--Phi-3-mini-4k-instruct-onnx", "snapshots", fakeCommit, filepath.FromSlash(tt.variant))
			if dir != want {
				t.Fatalf("ResolveLLM = %s, want %s", dir, want)
			}
			if !IsGenAIDir(dir) {
				t.Errorf("%s is not a genai dir", dir)
			}
			// Only the chosen variant is fetched.
			for _, r := range srv.Requests() {
				if strings.Contains(r.Path, "/resolve/") && !strings.Contains(r.Path, "/"+tt.variant+"/") {
					t.Errorf("downloaded %s outside the variant", r.Path)
				}
			}
			// A second resolve finds everything in the cache: no request.
			before := len(srv.Requests())
			again, err := ResolveLLM(llmContext(t), tt.ref, opts)
			if err != nil || again != dir {
				t.Fatalf("second ResolveLLM = %s, %v; want %s", again, err, dir)
			}
			if n := len(srv.Requests()) - before; n != 0 {
				t.Errorf("cached resolve made %d requests, want 0", n)
			}
		})
	}
}

func TestResolveLLMCache(t *testing.T) {
	srv := newPhi3Hub(t)
	cache := t.TempDir()
	if _, err := ResolveLLM(llmContext(t), Phi3, LLMOptions{Hub: newHubClient(t, srv, cache, false)}); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(cache, "models--microsoft--Phi-3-mini-4k-instruct-onnx", "snapshots", fakeCommit)
	cpuDir := filepath.Join(snap, filepath.FromSlash(phi3CPU))

	tests := []struct {
		name    string
		offline bool
		device  string
		// breakCache removes a file from the cached variant first.
		breakCache   string
		wantDir      string
		wantErr      error
		wantText     []string
		wantRequests bool
	}{
		{name: "offline hit", offline: true, wantDir: cpuDir},
		{name: "offline, other variant not cached", offline: true, device: "cuda", wantErr: hub.ErrOffline,
			wantText: []string{"--model-path", "huggingface-cli download " + Phi3Repo + " --include '" + phi3CUDA + "/*'", cache}},
		{name: "online repairs a missing tokenizer", breakCache: TokenizerFile, wantDir: cpuDir, wantRequests: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.breakCache != "" {
				if err := os.Remove(filepath.Join(cpuDir, tt.breakCache)); err != nil {
					t.Fatal(err)
				}
			}
			before := len(srv.Requests())
			dir, err := ResolveLLM(llmContext(t), Phi3, LLMOptions{Device: tt.device, Hub: newHubClient(t, srv, cache, tt.offline)})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ResolveLLM = %v, want %v", err, tt.wantErr)
				}
				for _, s := range tt.wantText {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
			} else if err != nil || dir != tt.wantDir {
				t.Fatalf("ResolveLLM = %s, %v; want %s", dir, err, tt.wantDir)
			}
			if got := len(srv.Requests()) > before; got != tt.wantRequests {
				t.Errorf("made requests = %v, want %v", got, tt.wantRequests)
			}
		})
	}
}

func TestResolveLLMLocalPath(t *testing.T) {
	variantDir := t.TempDir()
	writeGenAI(t, variantDir, "")
	repoDir := t.TempDir()
	writeGenAI(t, filepath.Join(repoDir, filepath.FromSlash(phi3CPU)), "")
	noTokenizer := t.TempDir()
	writeGenAI(t, noTokenizer, TokenizerFile)
	noDecoder := t.TempDir()
	writeGenAI(t, noDecoder, "model.onnx")
	defaultDecoder := t.TempDir()
	writeGenAI(t, defaultDecoder, "")
	write(t, defaultDecoder, GenAIConfigFile, `{"model":{"type":"phi3"}}`)
	defaultDecoderMissing := t.TempDir()
	writeGenAI(t, defaultDecoderMissing, "model.onnx")
	write(t, defaultDecoderMissing, GenAIConfigFile, `{}`)
	escaping := t.TempDir()
	writeGenAI(t, escaping, "")
	write(t, escaping, GenAIConfigFile, `{"model":{"decoder":{"filename":"../model.onnx"}}}`)

	tests := []struct {
		name     string
		path     string
		want     string
		wantText string
	}{
		{name: "variant folder", path: variantDir, want: variantDir},
		{name: "repository clone", path: repoDir, want: filepath.Join(repoDir, filepath.FromSlash(phi3CPU))},
		{name: "no tokenizer", path: noTokenizer, wantText: "lacks tokenizer.json"},
		{name: "no decoder", path: noDecoder, wantText: "lacks model.onnx"},
		{name: "default decoder name", path: defaultDecoder, want: defaultDecoder},
		{name: "default decoder missing", path: defaultDecoderMissing, wantText: "lacks model.onnx"},
		{name: "decoder outside", path: escaping, wantText: "not a file in the model directory"},
		{name: "missing directory", path: filepath.Join(variantDir, "nope"), wantText: "lacks genai_config.json, tokenizer.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A Hub that must not be used: the local path wins.
			c, err := hub.New(hub.Options{Endpoint: "http://127.0.0.1:1", CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			dir, err := ResolveLLM(llmContext(t), Phi3, LLMOptions{LocalPath: tt.path, Hub: c})
			if tt.wantText != "" {
				if !errors.Is(err, ErrNotGenAI) || !strings.Contains(err.Error(), tt.wantText) || !strings.Contains(err.Error(), "--model-path") {
					t.Fatalf("ResolveLLM = %v, want ErrNotGenAI mentioning %q", err, tt.wantText)
				}
				return
			}
			if err != nil || dir != tt.want {
				t.Fatalf("ResolveLLM = %s, %v; want %s", dir, err, tt.want)
			}
		})
	}
}

func TestResolveLLMErrors(t *testing.T) {
	tests := []struct {
		name     string
		ref      string
		opts     LLMOptions
		want     error
		wantText []string
	}{
		{name: "unknown model", ref: "llama9", want: ErrNotFound, wantText: []string{"phi3", Phi3Repo}},
		{name: "unknown device", ref: Phi3, opts: LLMOptions{Device: "tpu"}, want: ErrNotFound, wantText: []string{"cpu, cuda", "--model-variant"}},
		{name: "escaping variant", ref: Phi3, opts: LLMOptions{Variant: "../x"}, want: ErrNotFound},
		{name: "no hub", ref: Phi3, want: hub.ErrOffline, wantText: []string{"--model-path", "huggingface-cli download"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ResolveLLM(llmContext(t), tt.ref, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ResolveLLM = %v, want %v", err, tt.want)
			}
			for _, s := range tt.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

func TestResolveLLMHubUnreachable(t *testing.T) {
	// Port 1 on loopback refuses connections.
	c, err := hub.New(hub.Options{Endpoint: "http://127.0.0.1:1", CacheDir: t.TempDir(), MaxAttempts: 2, RetryBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ResolveLLM(llmContext(t), Phi3, LLMOptions{Hub: c})
	if err == nil {
		t.Fatal("ResolveLLM succeeded without a Hub")
	}
	for _, s := range []string{"giving up after 2 attempts", "--model-path", "huggingface-cli download"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

func TestResolveLLMVariantNotOnHub(t *testing.T) {
	srv := newPhi3Hub(t)
	_, err := ResolveLLM(llmContext(t), Phi3, LLMOptions{Variant: "directml/nope", Hub: newHubClient(t, srv, t.TempDir(), false)})
	if !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("ResolveLLM = %v, want hub.ErrNotFound", err)
	}
}

func TestIsGenAIDirAndRef(t *testing.T) {
	genai := t.TempDir()
	writeGenAI(t, genai, "")
	truss := t.TempDir()
	write(t, truss, "config.yaml", "model_name: x\n")
	dirs := []struct {
		dir  string
		want bool
	}{
		{genai, true},
		{truss, false},
		{filepath.Join(genai, GenAIConfigFile), false},
		{filepath.Join(genai, "missing"), false},
	}
	for _, tt := range dirs {
		if got := IsGenAIDir(tt.dir); got != tt.want {
			t.Errorf("IsGenAIDir(%s) = %v, want %v", tt.dir, got, tt.want)
		}
	}
	refs := []struct {
		ref  string
		want bool
	}{
		{Phi3, true}, {Phi3Repo, true}, {DefaultModel, false}, {"microsoft/other", false}, {"", false},
	}
	for _, tt := range refs {
		if got := IsLLMRef(tt.ref); got != tt.want {
			t.Errorf("IsLLMRef(%q) = %v, want %v", tt.ref, got, tt.want)
		}
	}
}

func FuzzGenAIDecoderFile(f *testing.F) {
	f.Add([]byte(`{"model":{"decoder":{"filename":"model.onnx"}}}`))
	f.Add([]byte(`{"model":{"decoder":{"filename":"../x"}}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		name, err := genaiDecoderFile(data)
		if err == nil && !filepath.IsLocal(name) {
			t.Fatalf("accepted decoder file %q", name)
		}
	})
}
