package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/modelserver/modelserver/config"
	"github.com/modelserver/modelserver/cuda"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/hub"
	"github.com/modelserver/modelserver/llm"
	"github.com/modelserver/modelserver/models"
)

// llmFlags locate a generative model's files: --model phi3 is found in
// --model-path, the Hugging Face cache or the Hub.
type llmFlags struct {
	modelPath     string
	modelVariant  string
	modelRevision string
	hfOffline     bool
	configFile    string
}

func (l *llmFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.modelPath, "model-path", "", "directory holding the files of --model phi3 (the variant folder or the whole repository); skips the cache and the Hub")
	fs.StringVar(&l.modelVariant, "model-variant", "", "repository subfolder of an LLM (default: the CPU int4 export on the CPU, cuda/cuda-fp16 on a GPU)")
	fs.StringVar(&l.modelRevision, "model-revision", "", "Hub branch, tag or commit of an LLM (default main)")
	fs.BoolVar(&l.hfOffline, "hf-offline", false, "never contact the Hub; use the Hugging Face cache only (also $HF_HUB_OFFLINE=1)")
	fs.StringVar(&l.configFile, "config", "", "config.yaml to apply (default: the model directory's config.yaml, if any)")
}

// isLLM reports whether --model names a generative language model: a known
// alias or repository, or a directory in the onnxruntime-genai layout.
func isLLM(ref string) bool { return models.IsLLMRef(ref) || models.IsGenAIDir(ref) }

// llmSource builds the Source of an LLM before its files are located, so
// device selection and the server options can read its configuration.
func llmSource(f flags) (*models.Source, error) {
	cfg := config.Defaults()
	path := f.llm.configFile
	if path == "" && models.IsGenAIDir(f.model) {
		if p := filepath.Join(f.model, "config.yaml"); fileExists(p) {
			path = p
		}
	}
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return nil, err
		}
	} else {
		// Without a config.yaml the OpenAI model name is what the user typed
		// (phi3) or the directory's name, as vLLM names a served model.
		cfg.ModelName = f.model
		if models.IsGenAIDir(f.model) {
			cfg.ModelName = filepath.Base(filepath.Clean(f.model))
		}
	}
	return &models.Source{Name: f.model, Kind: models.KindLLM, Config: cfg}, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// newHubClient reads the Hugging Face environment (HF_HOME, HF_HUB_CACHE,
// HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE) for downloads of --model phi3.
func newHubClient(f llmFlags, log *slog.Logger) (*hub.Client, error) {
	offline := f.hfOffline
	switch strings.ToLower(os.Getenv("HF_HUB_OFFLINE")) {
	case "1", "true", "yes", "on":
		offline = true
	}
	return hub.New(hub.Options{
		Endpoint:           os.Getenv("HF_ENDPOINT"),
		Token:              hub.DefaultToken(os.Getenv),
		CacheDir:           hub.DefaultCacheDir(os.Getenv),
		Logger:             log,
		Progress:           os.Stderr,
		ProgressIsTerminal: term.IsTerminal(int(os.Stderr.Fd())),
		Offline:            offline,
	})
}

// loadLLM finds (or downloads) the model's files and opens the engine; the
// server answers 503 on readiness meanwhile.
func loadLLM(ctx context.Context, src *models.Source, f flags, placement cuda.Placement, exec engine.Execution, log *slog.Logger) (*llm.Engine, error) {
	start := time.Now()
	dir := src.Name
	if !models.IsGenAIDir(dir) {
		client, err := newHubClient(f.llm, log)
		if err != nil {
			return nil, err
		}
		device := "cpu"
		if placement.Kind != cuda.CPU {
			device = "cuda"
		}
		dir, err = models.ResolveLLM(ctx, src.Name, models.LLMOptions{
			Device: device, Variant: f.llm.modelVariant, Revision: f.llm.modelRevision,
			LocalPath: f.llm.modelPath, Hub: client,
		})
		if err != nil {
			return nil, err
		}
	}
	log.Info("Executing model.load()...", "model", src.Name, "dir", dir)
	lc := src.Config.LLM
	e, err := llm.Open(dir, llm.Options{
		MaxSequences:    lc.MaxSequences,
		MaxContext:      lc.MaxContext,
		QueueSize:       lc.QueueSize,
		PrefillChunk:    lc.PrefillChunk,
		MaxKVCacheBytes: lc.MaxKVCacheBytes,
		ONNX:            engine.ONNXOptions{IntraOpThreads: f.intraOpThreads, Execution: exec},
		Logger:          log,
	})
	if errors.Is(err, engine.ErrProviderUnavailable) && !f.device.Explicit {
		log.Warn("ONNX Runtime cannot use the GPU; falling back to the CPU", "reason", err.Error())
		e, err = llm.Open(dir, llm.Options{
			MaxSequences: lc.MaxSequences, MaxContext: lc.MaxContext, QueueSize: lc.QueueSize, PrefillChunk: lc.PrefillChunk,
			MaxKVCacheBytes: lc.MaxKVCacheBytes, ONNX: engine.ONNXOptions{IntraOpThreads: f.intraOpThreads}, Logger: log,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("loading model %s: %w", src.Name, err)
	}
	log.Info(fmt.Sprintf("Completed model.load() execution in %d ms", time.Since(start).Milliseconds()), "model", src.Name)
	return e, nil
}
