package llm

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const phi3GenAIConfig = `{"model": {"bos_token_id": 1, "context_length": 4096,
  "decoder": {"filename": "model.onnx", "head_size": 96, "hidden_size": 3072,
    "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
      "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
    "outputs": {"logits": "logits", "present_key_names": "present.%d.key", "present_value_names": "present.%d.value"},
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32},
  "eos_token_id": [32000, 32001, 32007], "pad_token_id": 32000, "type": "phi3", "vocab_size": 32064},
 "search": {"max_length": 4096, "past_present_share_buffer": true}}`

func TestParseGenAIConfig(t *testing.T) {
	c, err := parseGenAIConfig([]byte(phi3GenAIConfig))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Model.Decoder
	if !slices.Equal(c.eos, []int32{32000, 32001, 32007}) || c.Model.ContextLength != 4096 || d.NumHiddenLayers != 32 ||
		d.HeadSize != 96 || d.Inputs.PositionIDs != "position_ids" || d.Outputs.PresentValueNames != "present.%d.value" {
		t.Errorf("parsed %+v", c)
	}
	one, err := parseGenAIConfig([]byte(strings.Replace(phi3GenAIConfig, "[32000, 32001, 32007]", "32000", 1)))
	if err != nil || !slices.Equal(one.eos, []int32{32000}) {
		t.Errorf("single eos id: %v %v", one, err)
	}

	bad := map[string]string{
		"not json":             "{",
		"no context length":    strings.NewReplacer(`"context_length": 4096,`, "", `"max_length": 4096,`, "").Replace(phi3GenAIConfig),
		"no layers":            strings.Replace(phi3GenAIConfig, `"num_hidden_layers": 32`, `"num_hidden_layers": 0`, 1),
		"eos not a number":     strings.Replace(phi3GenAIConfig, "[32000, 32001, 32007]", `"x"`, 1),
		"pattern without %d":   strings.Replace(phi3GenAIConfig, "present.%d.key", "present.key", 1),
		"pattern with %s":      strings.Replace(phi3GenAIConfig, "present.%d.key", "present.%d.%s", 1),
		"file outside the dir": strings.Replace(phi3GenAIConfig, `"model.onnx"`, `"../model.onnx"`, 1),
	}
	for name, data := range bad {
		if _, err := parseGenAIConfig([]byte(data)); !errors.Is(err, ErrModelLayout) {
			t.Errorf("%s: err = %v, want ErrModelLayout", name, err)
		}
	}
}

func FuzzParseGenAIConfig(f *testing.F) {
	f.Add([]byte(phi3GenAIConfig))
	f.Add([]byte(`{"model": {"eos_token_id": 2, "context_length": 8, "decoder": {"num_hidden_layers": 1, "num_key_value_heads": 1, "head_size": 16}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseGenAIConfig(data)
		if err != nil {
			if !errors.Is(err, ErrModelLayout) {
				t.Fatalf("error %v does not wrap ErrModelLayout", err)
			}
			return
		}
		d := c.Model.Decoder
		if c.Model.ContextLength <= 0 || d.NumHiddenLayers <= 0 || d.NumKeyValueHeads <= 0 || d.HeadSize <= 0 || d.Filename == "" {
			t.Fatalf("accepted %+v", c)
		}
	})
}
