package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/modelserver/modelserver/hub"
)

// Phi3 is the --model alias of Phi3Repo.
const Phi3 = "phi3"

// Phi3Repo is the Hub repository of Phi-3-mini-4k-instruct in the
// onnxruntime-genai format.
const Phi3Repo = "microsoft/Phi-3-mini-4k-instruct-onnx"

// GenAIConfigFile marks a directory in the onnxruntime-genai layout.
const GenAIConfigFile = "genai_config.json"

// TokenizerFile is the tokenizer a genai directory must hold.
const TokenizerFile = "tokenizer.json"

// ErrNotGenAI means a directory lacks the onnxruntime-genai files.
var ErrNotGenAI = errors.New("not an onnxruntime-genai model directory")

// llmRepo is a known LLM repository and its variant folder per device.
type llmRepo struct {
	repo     string
	variants map[string]string
}

// llmCatalog maps the --model aliases of LLMs to their repositories.
var llmCatalog = map[string]llmRepo{
	Phi3: {repo: Phi3Repo, variants: map[string]string{
		"cpu":  "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4",
		"cuda": "cuda/cuda-fp16",
	}},
}

// LLMOptions steer ResolveLLM. The zero value resolves the CPU variant from
// nowhere but a local path, which it lacks, so callers set LocalPath or Hub.
type LLMOptions struct {
	// Device picks the default variant: "cpu" (the default) or "cuda"; a
	// device index ("cuda:1") is ignored.
	Device string
	// Variant overrides the repository subfolder chosen by Device; "." is
	// the repository root.
	Variant string
	// Revision is the branch, tag or commit. Default hub.DefaultRevision.
	Revision string
	// LocalPath is a directory holding the variant's files (or the whole
	// repository, with the variant in its subfolder). It wins over the
	// cache and the Hub.
	LocalPath string
	// Hub finds the files in the Hugging Face cache and downloads the
	// missing ones (unless it is offline). Nil: neither cache nor download.
	Hub *hub.Client
}

// IsLLMRef reports whether ref names an LLM for ResolveLLM: a known alias
// such as "phi3" or a known repository id.
func IsLLMRef(ref string) bool {
	_, _, ok := lookupLLM(ref)
	return ok
}

func lookupLLM(ref string) (string, llmRepo, bool) {
	if r, ok := llmCatalog[ref]; ok {
		return ref, r, true
	}
	for alias, r := range llmCatalog {
		if r.repo == ref {
			return alias, r, true
		}
	}
	return "", llmRepo{}, false
}

// IsGenAIDir reports whether dir holds an onnxruntime-genai model (a
// genai_config.json), so that "--model DIR" can go to the LLM engine.
func IsGenAIDir(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, GenAIConfigFile))
	return err == nil && st.Mode().IsRegular()
}

// ResolveLLM returns the directory holding the onnxruntime-genai files of
// the LLM that ref names ("phi3" or its repository id), for the variant
// that opts select. It looks, in order, in opts.LocalPath, in the cache of
// opts.Hub, and then downloads through opts.Hub. Errors wrap ErrNotFound
// (unknown ref or variant), ErrNotGenAI (files missing), hub.ErrOffline
// (not cached and no download possible; the message says how to provide
// the files) or the hub's download errors.
func ResolveLLM(ctx context.Context, ref string, opts LLMOptions) (string, error) {
	alias, known, ok := lookupLLM(ref)
	if !ok {
		return "", fmt.Errorf("%w: %q is not a known LLM (known: %s)", ErrNotFound, ref, strings.Join(llmAliases(), ", "))
	}
	variant, err := pickVariant(alias, known, opts)
	if err != nil {
		return "", err
	}
	if opts.LocalPath != "" {
		return resolveLocalLLM(opts.LocalPath, known.repo, variant)
	}
	howTo := fmt.Sprintf("pass --model-path DIR with the files of %s/%s (%s, %s, the .onnx and .onnx.data files), "+
		"or fetch them into the Hugging Face cache with: huggingface-cli download %s --include '%s'",
		known.repo, variant, GenAIConfigFile, TokenizerFile, known.repo, path.Join(variant, "*"))
	if opts.Hub == nil {
		return "", fmt.Errorf("%w: %s needs its model files and downloading is off; %s", hub.ErrOffline, alias, howTo)
	}
	revision := opts.Revision
	if revision == "" {
		revision = hub.DefaultRevision
	}
	if snap, err := opts.Hub.CachedSnapshot(known.repo, revision); err == nil {
		dir := filepath.Join(snap, filepath.FromSlash(variant))
		if checkGenAIDir(dir) == nil {
			return dir, nil
		}
	}
	if opts.Hub.Offline() {
		return "", fmt.Errorf("%w: %s %s (%s) is not complete in the cache %s; %s",
			hub.ErrOffline, known.repo, variant, revision, opts.Hub.CacheDir(), howTo)
	}
	snap, err := opts.Hub.Snapshot(ctx, known.repo, revision, underVariant(variant))
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("%s %s: %w", known.repo, variant, err)
		}
		return "", fmt.Errorf("%s %s: %w; to run without the Hub, %s", known.repo, variant, err, howTo)
	}
	dir := filepath.Join(snap, filepath.FromSlash(variant))
	if err := checkGenAIDir(dir); err != nil {
		return "", fmt.Errorf("%s %s downloaded, but %w", known.repo, variant, err)
	}
	return dir, nil
}

func llmAliases() []string {
	var out []string
	for alias, r := range llmCatalog {
		out = append(out, alias, r.repo)
	}
	slices.Sort(out)
	return out
}

// pickVariant returns opts.Variant, or the variant of the device.
func pickVariant(alias string, r llmRepo, opts LLMOptions) (string, error) {
	if opts.Variant != "" {
		v := strings.Trim(opts.Variant, "/")
		if v == "" || v != path.Clean(v) || v == ".." || strings.HasPrefix(v, "../") || strings.Contains(v, "\\") {
			return "", fmt.Errorf("%w: variant %q is not a folder of %s", ErrNotFound, opts.Variant, r.repo)
		}
		return v, nil
	}
	// "cuda:1" picks the same files as "cuda".
	device, _, _ := strings.Cut(opts.Device, ":")
	if device == "" {
		device = "cpu"
	}
	v, ok := r.variants[device]
	if !ok {
		devices := make([]string, 0, len(r.variants))
		for d := range r.variants {
			devices = append(devices, d)
		}
		slices.Sort(devices)
		return "", fmt.Errorf("%w: %s has no variant for device %q (devices: %s; or name a folder with --model-variant)",
			ErrNotFound, alias, device, strings.Join(devices, ", "))
	}
	return v, nil
}

// underVariant selects the files of one variant folder ("." selects all).
func underVariant(variant string) func(string) bool {
	if variant == "." {
		return nil
	}
	prefix := variant + "/"
	return func(p string) bool { return strings.HasPrefix(p, prefix) }
}

// resolveLocalLLM accepts dir itself or its variant subfolder, whichever
// holds the genai files.
func resolveLocalLLM(dir, repo, variant string) (string, error) {
	err := checkGenAIDir(dir)
	if err == nil {
		return dir, nil
	}
	sub := filepath.Join(dir, filepath.FromSlash(variant))
	if checkGenAIDir(sub) == nil {
		return sub, nil
	}
	return "", fmt.Errorf("--model-path %s: %w; it must hold the files of %s/%s (or the repository with that folder)", dir, err, repo, variant)
}

// checkGenAIDir checks that dir holds genai_config.json, tokenizer.json and
// the decoder file genai_config.json names.
func checkGenAIDir(dir string) error {
	var missing []string
	cfg, err := os.ReadFile(filepath.Join(dir, GenAIConfigFile))
	if err != nil {
		missing = append(missing, GenAIConfigFile)
	}
	for _, name := range []string{TokenizerFile} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || !st.Mode().IsRegular() {
			missing = append(missing, name)
		}
	}
	if cfg != nil {
		decoder, err := genaiDecoderFile(cfg)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrNotGenAI, filepath.Join(dir, GenAIConfigFile), err)
		}
		if st, err := os.Stat(filepath.Join(dir, decoder)); err != nil || !st.Mode().IsRegular() {
			missing = append(missing, decoder)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s lacks %s", ErrNotGenAI, dir, strings.Join(missing, ", "))
	}
	return nil
}

// genaiDecoderFile returns model.decoder.filename from a genai_config.json
// (onnxruntime-genai's default "model.onnx" when absent), refusing names
// outside the directory.
func genaiDecoderFile(data []byte) (string, error) {
	var cfg struct {
		Model struct {
			Decoder struct {
				Filename string `json:"filename"`
			} `json:"decoder"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return "", err
	}
	name := cfg.Model.Decoder.Filename
	if name == "" {
		name = "model.onnx"
	}
	if !filepath.IsLocal(name) || strings.Contains(name, "\\") {
		return "", fmt.Errorf("decoder filename %q is not a file in the model directory", name)
	}
	return name, nil
}
