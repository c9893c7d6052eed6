package llm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrModelLayout is wrapped by every error about a model directory that is
// not an onnxruntime-genai decoder export this package can run.
var ErrModelLayout = errors.New("llm: unsupported model layout")

// genaiConfigFile is onnxruntime-genai's model description, next to the
// .onnx file.
const genaiConfigFile = "genai_config.json"

// genaiConfig is the part of genai_config.json the engine reads.
type genaiConfig struct {
	Model struct {
		BOSTokenID    int             `json:"bos_token_id"`
		ContextLength int             `json:"context_length"`
		EOSTokenID    json.RawMessage `json:"eos_token_id"` // a number or a list
		PadTokenID    int             `json:"pad_token_id"`
		Type          string          `json:"type"`
		VocabSize     int             `json:"vocab_size"`
		Decoder       struct {
			Filename          string `json:"filename"`
			HeadSize          int    `json:"head_size"`
			HiddenSize        int    `json:"hidden_size"`
			NumAttentionHeads int    `json:"num_attention_heads"`
			NumHiddenLayers   int    `json:"num_hidden_layers"`
			NumKeyValueHeads  int    `json:"num_key_value_heads"`
			Inputs            struct {
				InputIDs       string `json:"input_ids"`
				AttentionMask  string `json:"attention_mask"`
				PositionIDs    string `json:"position_ids"`
				PastKeyNames   string `json:"past_key_names"`
				PastValueNames string `json:"past_value_names"`
			} `json:"inputs"`
			Outputs struct {
				Logits            string `json:"logits"`
				PresentKeyNames   string `json:"present_key_names"`
				PresentValueNames string `json:"present_value_names"`
			} `json:"outputs"`
		} `json:"decoder"`
	} `json:"model"`
	Search struct {
		MaxLength              int  `json:"max_length"`
		PastPresentShareBuffer bool `json:"past_present_share_buffer"`
	} `json:"search"`

	// eos is EOSTokenID as a list.
	eos []int32
}

// readGenAIConfig reads dir/genai_config.json.
func readGenAIConfig(dir string) (*genaiConfig, error) {
	data, err := os.ReadFile(filepath.Join(dir, genaiConfigFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrModelLayout, err)
	}
	return parseGenAIConfig(data)
}

// parseGenAIConfig decodes genai_config.json, fills in onnxruntime-genai's
// default names and checks the sizes.
func parseGenAIConfig(data []byte) (*genaiConfig, error) {
	var c genaiConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrModelLayout, genaiConfigFile, err)
	}
	m := &c.Model
	d := &m.Decoder
	setDefault(&d.Filename, "model.onnx")
	setDefault(&d.Inputs.InputIDs, "input_ids")
	setDefault(&d.Inputs.AttentionMask, "attention_mask")
	setDefault(&d.Inputs.PositionIDs, "position_ids")
	setDefault(&d.Inputs.PastKeyNames, "past_key_values.%d.key")
	setDefault(&d.Inputs.PastValueNames, "past_key_values.%d.value")
	setDefault(&d.Outputs.Logits, "logits")
	setDefault(&d.Outputs.PresentKeyNames, "present.%d.key")
	setDefault(&d.Outputs.PresentValueNames, "present.%d.value")
	if len(m.EOSTokenID) > 0 {
		var one int32
		if err := json.Unmarshal(m.EOSTokenID, &one); err == nil {
			c.eos = []int32{one}
		} else if err := json.Unmarshal(m.EOSTokenID, &c.eos); err != nil {
			return nil, fmt.Errorf("%w: %s: eos_token_id is neither a number nor a list of numbers", ErrModelLayout, genaiConfigFile)
		}
	}
	if m.ContextLength <= 0 {
		m.ContextLength = c.Search.MaxLength
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrModelLayout, genaiConfigFile, fmt.Sprintf(format, args...))
	}
	switch {
	case m.ContextLength <= 0:
		return nil, bad("no context_length (or search.max_length)")
	case d.NumHiddenLayers <= 0 || d.NumKeyValueHeads <= 0 || d.HeadSize <= 0:
		return nil, bad("num_hidden_layers %d, num_key_value_heads %d and head_size %d must be positive",
			d.NumHiddenLayers, d.NumKeyValueHeads, d.HeadSize)
	case filepath.IsAbs(d.Filename) || strings.Contains(d.Filename, ".."):
		return nil, bad("decoder filename %q must name a file inside the model directory", d.Filename)
	}
	for _, pattern := range []string{d.Inputs.PastKeyNames, d.Inputs.PastValueNames, d.Outputs.PresentKeyNames, d.Outputs.PresentValueNames} {
		if strings.Count(pattern, "%d") != 1 || strings.Count(pattern, "%") != 1 {
			return nil, bad("KV name pattern %q must contain exactly one %%d", pattern)
		}
	}
	return &c, nil
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}
