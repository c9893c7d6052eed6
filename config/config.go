// Package config reads a Truss-style config.yaml.
//
// Only the fields modelserver acts on are typed; every other key of the Truss
// schema is accepted silently, and keys outside it are reported once by Load
// (as Config.UnknownKeys) so a typo does not go unnoticed. Units are in the
// field names (_s seconds, _ms milliseconds, _us microseconds). Load fills in
// the documented defaults for fields a file leaves out.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"go.yaml.in/yaml/v3"
)

// Config is the part of config.yaml that modelserver uses.
type Config struct {
	ModelName     string         `yaml:"model_name"`
	ModelMetadata map[string]any `yaml:"model_metadata"`
	Resources     Resources      `yaml:"resources"`
	Runtime       Runtime        `yaml:"runtime"`
	// LLM configures the text-generation engine (package llm); models
	// other than generative language models ignore it.
	LLM LLM `yaml:"llm"`

	// UnknownKeys lists keys outside the Truss schema, as dotted paths.
	UnknownKeys []string `yaml:"-"`
}

// Resources is the hardware a deployment asks for.
type Resources struct {
	CPU         string `yaml:"cpu"`
	Memory      string `yaml:"memory"`
	Accelerator string `yaml:"accelerator"`
}

// Runtime holds the serving settings.
type Runtime struct {
	// PredictConcurrency bounds model executions in flight. Default 1.
	PredictConcurrency int `yaml:"predict_concurrency"`
	// PredictTimeoutS is the queue plus execution deadline of one request, in
	// seconds; 0 means none. Default 600.
	PredictTimeoutS float64 `yaml:"predict_timeout_s"`
	// StreamingReadTimeout is the longest gap between streamed chunks, in
	// seconds. Default 60.
	StreamingReadTimeout int  `yaml:"streaming_read_timeout"`
	EnableTracingData    bool `yaml:"enable_tracing_data"`
	EnableDebugLogs      bool `yaml:"enable_debug_logs"`
	// MaxRequestBytes caps a request body; larger bodies get 413. Default
	// 100 MiB.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// Batching configures dynamic batching of predict requests.
	Batching Batching `yaml:"batching"`
}

// Batching configures the dynamic batcher (see package batching).
type Batching struct {
	// MaxBatchSize is the most rows (along dimension 0, not requests) one
	// execution takes; 0 disables batching. Default 32.
	MaxBatchSize int `yaml:"max_batch_size"`
	// MaxQueueDelayUS is the longest a request waits for its batch to
	// fill, in microseconds. Default 1000.
	MaxQueueDelayUS int `yaml:"max_queue_delay_us"`
	// PreferredBatchSizes are row counts sent at once when reached.
	// Default none.
	PreferredBatchSizes []int `yaml:"preferred_batch_sizes"`
	// MaxQueueSize is the most requests waiting; a full queue answers 429
	// at once. Default 1024.
	MaxQueueSize int `yaml:"max_queue_size"`
	// QueueTimeoutMS is the longest a request may wait in the queue, in
	// milliseconds, before it gets 429; 0 means no limit. Default 0.
	QueueTimeoutMS int `yaml:"queue_timeout_ms"`
}

// LLM configures continuous batching of a generative language model.
type LLM struct {
	// MaxSequences is the number of sequences decoded together, each
	// holding a KV cache slot of max_context tokens. Default 0: 16, or
	// fewer when their KV cache would pass max_kv_cache_bytes (Phi-3 mini
	// at 4k tokens on the CPU: 2).
	MaxSequences int `yaml:"max_sequences"`
	// MaxContext is the most tokens (prompt and output) one sequence may
	// hold; 0 means the model's context length (which also caps it), or
	// less when one sequence of it would not fit max_kv_cache_bytes.
	// Default 0.
	MaxContext int `yaml:"max_context"`
	// QueueSize is the most requests waiting for a slot; a full queue
	// answers 429 at once. Default 256.
	QueueSize int `yaml:"queue_size"`
	// PrefillChunk is the most prompt tokens run in one step; longer
	// prompts are prefilled over several steps, between decode steps of
	// the running sequences. Default 512.
	PrefillChunk int `yaml:"prefill_chunk"`
	// MaxKVCacheBytes caps the KV cache allocated at load. Default 0:
	// 8 GiB. When max_sequences and max_context are left at 0 they are
	// sized to fit it.
	MaxKVCacheBytes int64 `yaml:"max_kv_cache_bytes"`
}

// Defaults returns the configuration used for anything a file leaves out.
func Defaults() Config {
	return Config{
		ModelName: "model",
		Runtime: Runtime{
			PredictConcurrency:   1,
			PredictTimeoutS:      600,
			StreamingReadTimeout: 60,
			MaxRequestBytes:      100 << 20,
			Batching: Batching{
				MaxBatchSize:    32,
				MaxQueueDelayUS: 1000,
				MaxQueueSize:    1024,
			},
		},
		LLM: LLM{QueueSize: 256, PrefillChunk: 512},
	}
}

// ErrInvalid is wrapped by every error about a config file's content.
var ErrInvalid = errors.New("invalid config.yaml")

// Load reads and validates the config file at path.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return Parse(data)
}

// Parse validates a config.yaml document held in memory.
func Parse(data []byte) (Config, error) {
	cfg := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return cfg, nil // an empty file is a valid, empty config
		}
		return Config{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := root.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	cfg.UnknownKeys = unknownKeys(&root)
	if err := cfg.validate(); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return cfg, nil
}

func (c *Config) validate() error {
	r := c.Runtime
	switch {
	case r.PredictConcurrency < 1:
		return fmt.Errorf("runtime.predict_concurrency must be at least 1, got %d", r.PredictConcurrency)
	case r.PredictTimeoutS < 0:
		return fmt.Errorf("runtime.predict_timeout_s must not be negative, got %g", r.PredictTimeoutS)
	case r.StreamingReadTimeout < 0:
		return fmt.Errorf("runtime.streaming_read_timeout must not be negative, got %d", r.StreamingReadTimeout)
	case r.MaxRequestBytes <= 0:
		return fmt.Errorf("runtime.max_request_bytes must be positive, got %d", r.MaxRequestBytes)
	}
	if err := r.Batching.validate(); err != nil {
		return err
	}
	return c.LLM.validate()
}

func (l LLM) validate() error {
	switch {
	case l.MaxSequences < 0:
		return fmt.Errorf("llm.max_sequences must not be negative, got %d", l.MaxSequences)
	case l.MaxContext < 0:
		return fmt.Errorf("llm.max_context must not be negative, got %d", l.MaxContext)
	case l.QueueSize < 1:
		return fmt.Errorf("llm.queue_size must be at least 1, got %d", l.QueueSize)
	case l.PrefillChunk < 1:
		return fmt.Errorf("llm.prefill_chunk must be at least 1, got %d", l.PrefillChunk)
	case l.MaxKVCacheBytes < 0:
		return fmt.Errorf("llm.max_kv_cache_bytes must not be negative, got %d", l.MaxKVCacheBytes)
	}
	return nil
}

func (b Batching) validate() error {
	switch {
	case b.MaxBatchSize < 0:
		return fmt.Errorf("runtime.batching.max_batch_size must not be negative, got %d", b.MaxBatchSize)
	case b.MaxQueueDelayUS < 0:
		return fmt.Errorf("runtime.batching.max_queue_delay_us must not be negative, got %d", b.MaxQueueDelayUS)
	case b.MaxQueueSize < 1:
		return fmt.Errorf("runtime.batching.max_queue_size must be at least 1, got %d", b.MaxQueueSize)
	case b.QueueTimeoutMS < 0:
		return fmt.Errorf("runtime.batching.queue_timeout_ms must not be negative, got %d", b.QueueTimeoutMS)
	}
	for _, n := range b.PreferredBatchSizes {
		if n < 1 || (b.MaxBatchSize > 0 && n > b.MaxBatchSize) {
			return fmt.Errorf("runtime.batching.preferred_batch_sizes: %d is not between 1 and max_batch_size %d", n, b.MaxBatchSize)
		}
	}
	return nil
}

// schema lists the Truss config keys (truss/base/truss_config.py) and
// modelserver's own llm section; nil means any content is accepted below
// that key.
var schema = map[string]map[string]bool{
	"model_name": nil, "python_version": nil, "requirements": nil, "requirements_file": nil,
	"system_packages": nil, "environment_variables": nil, "secrets": nil, "model_metadata": nil,
	"resources": {
		"cpu": true, "memory": true, "accelerator": true, "use_gpu": true,
		"instance_type": true, "node_count": true, "fabric": true,
	},
	"runtime": {
		"predict_concurrency": true, "predict_timeout_s": true, "streaming_read_timeout": true,
		"enable_tracing_data": true, "enable_debug_logs": true, "transport": true,
		"is_websocket_endpoint": true, "health_checks": true, "truss_server_version_override": true,
		"max_request_bytes": true, "batching": true,
	},
	"runtime.batching": {
		"max_batch_size": true, "max_queue_delay_us": true, "preferred_batch_sizes": true,
		"max_queue_size": true, "queue_timeout_ms": true,
	},
	"llm":         {"max_sequences": true, "max_context": true, "queue_size": true, "prefill_chunk": true, "max_kv_cache_bytes": true},
	"model_cache": nil, "weights": nil, "external_data": nil, "data_dir": nil,
	"model_module_dir": nil, "model_class_filename": nil, "model_class_name": nil,
	"bundled_packages_dir": nil, "apply_library_patches": nil, "live_reload": nil,
	"docker_server": nil, "base_image": nil, "build": nil, "build_commands": nil,
	"trt_llm": nil, "bis_llm": nil, "training_checkpoints": nil, "spec_version": nil,
	"description": nil, "examples_filename": nil, "model_framework": nil, "model_type": nil,
	"hf_cache": nil, "input_type": nil, "cache_internal": nil, "oidc": nil, "remote_ssh": nil,
	"egress_restrictions": nil,
}

func unknownKeys(root *yaml.Node) []string {
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	var unknown []string
	top := root.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		key, value := top.Content[i].Value, top.Content[i+1]
		sub, known := schema[key]
		if !known {
			unknown = append(unknown, key)
			continue
		}
		if sub == nil || value.Kind != yaml.MappingNode {
			continue
		}
		unknown = append(unknown, unknownIn(key, value, sub)...)
	}
	sort.Strings(unknown)
	return unknown
}

// unknownIn lists the keys of mapping node m (at dotted path) that known
// lacks, descending into sections the schema describes.
func unknownIn(path string, m *yaml.Node, known map[string]bool) []string {
	var unknown []string
	for j := 0; j+1 < len(m.Content); j += 2 {
		k, v := m.Content[j].Value, m.Content[j+1]
		if !known[k] {
			unknown = append(unknown, path+"."+k)
			continue
		}
		if sub, ok := schema[path+"."+k]; ok && v.Kind == yaml.MappingNode {
			unknown = append(unknown, unknownIn(path+"."+k, v, sub)...)
		}
	}
	return unknown
}
