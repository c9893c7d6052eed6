package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    func(*Config)
		unknown []string
	}{
		{"empty file", "", func(*Config) {}, nil},
		{"model name only", "model_name: iris\n", func(c *Config) { c.ModelName = "iris" }, nil},
		{"runtime overrides", "runtime:\n  predict_concurrency: 4\n  predict_timeout_s: 2.5\n  max_request_bytes: 1024\n",
			func(c *Config) {
				c.Runtime.PredictConcurrency, c.Runtime.PredictTimeoutS, c.Runtime.MaxRequestBytes = 4, 2.5, 1024
			}, nil},
		{"full truss config", "model_name: x\npython_version: py311\nrequirements: [numpy]\nresources:\n  accelerator: H100:2\n  use_gpu: true\nsecrets:\n  hf: null\nruntime:\n  streaming_read_timeout: 5\n  transport: {kind: http}\n",
			func(c *Config) {
				c.ModelName, c.Resources.Accelerator, c.Runtime.StreamingReadTimeout = "x", "H100:2", 5
			}, nil},
		{"batching", "runtime:\n  batching:\n    max_batch_size: 0\n    preferred_batch_sizes: [4, 8]\n    queue_timeout_ms: 50\n    max_queue_delay: 3\n",
			func(c *Config) {
				c.Runtime.Batching.MaxBatchSize, c.Runtime.Batching.PreferredBatchSizes, c.Runtime.Batching.QueueTimeoutMS = 0, []int{4, 8}, 50
			}, []string{"runtime.batching.max_queue_delay"}},
		{"llm", "llm:\n  max_sequences: 4\n  max_context: 1024\n  queue_size: 8\n  prefill_chunk: 64\n  max_kv_cache_bytes: 1048576\n  max_batch: 2\n",
			func(c *Config) {
				c.LLM = LLM{MaxSequences: 4, MaxContext: 1024, QueueSize: 8, PrefillChunk: 64, MaxKVCacheBytes: 1 << 20}
			},
			[]string{"llm.max_batch"}},
		{"unknown keys", "model_name: x\nmodle_name: y\nruntime:\n  predict_concurency: 3\nresources:\n  gpus: 1\n",
			func(c *Config) { c.ModelName = "x" }, []string{"modle_name", "resources.gpus", "runtime.predict_concurency"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			want := Defaults()
			tt.want(&want)
			want.UnknownKeys = tt.unknown
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tt.yaml, diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := map[string]string{
		"model_name: [unclosed\n":                  "did not find expected",
		"- a list\n":                               "cannot unmarshal",
		"runtime:\n  predict_concurrency: zero\n":  "cannot unmarshal",
		"runtime:\n  predict_concurrency: 0\n":     "predict_concurrency must be at least 1",
		"runtime:\n  predict_timeout_s: -1\n":      "predict_timeout_s must not be negative",
		"runtime:\n  max_request_bytes: 0\n":       "max_request_bytes must be positive",
		"runtime:\n  streaming_read_timeout: -5\n": "streaming_read_timeout must not be negative",
		"llm:\n  max_sequences: -1\n":              "llm.max_sequences must not be negative",
		"llm:\n  max_context: -1\n":                "llm.max_context must not be negative",
		"llm:\n  queue_size: 0\n":                  "llm.queue_size must be at least 1",
		"llm:\n  prefill_chunk: 0\n":               "llm.prefill_chunk must be at least 1",
		"llm:\n  max_kv_cache_bytes: -1\n":         "llm.max_kv_cache_bytes must not be negative",
	}
	for yaml, want := range tests {
		_, err := Parse([]byte(yaml))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid containing %q", yaml, err, want)
		}
	}
}
