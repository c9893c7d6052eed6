package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// samplingFields are the request fields shared by chat, completions and the
// Truss predict route. Pointers tell "absent" from zero.
type samplingFields struct {
	Model               string         `json:"model"`
	MaxTokens           *int           `json:"max_tokens"`
	MaxCompletionTokens *int           `json:"max_completion_tokens"`
	Temperature         *float64       `json:"temperature"`
	TopP                *float64       `json:"top_p"`
	TopK                *int           `json:"top_k"`
	N                   *int           `json:"n"`
	Stop                stopList       `json:"stop"`
	Seed                *int64         `json:"seed"`
	PresencePenalty     *float64       `json:"presence_penalty"`
	FrequencyPenalty    *float64       `json:"frequency_penalty"`
	RepetitionPenalty   *float64       `json:"repetition_penalty"`
	Stream              bool           `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options"`
	User                string         `json:"user"`
	// IgnoreEOS is vLLM's extra: generate past the model's eos tokens
	// (benchmarks use it for fixed output lengths).
	IgnoreEOS bool `json:"ignore_eos"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatRequest is POST /v1/chat/completions's body. Fields not listed are
// ignored, as OpenAI-compatible servers do.
type chatRequest struct {
	samplingFields
	Messages    []chatMessage `json:"messages"`
	Logprobs    bool          `json:"logprobs"`
	TopLogprobs *int          `json:"top_logprobs"`
}

// completionRequest is POST /v1/completions's body.
type completionRequest struct {
	samplingFields
	Prompt   promptList `json:"prompt"`
	Logprobs *int       `json:"logprobs"`
	Echo     bool       `json:"echo"`
	Suffix   string     `json:"suffix"`
}

// chatMessage is one message; Content is a string or an array of text
// parts.
type chatMessage struct {
	Role    string         `json:"role"`
	Content messageContent `json:"content"`
}

// messageContent is a message's text: a JSON string, null, or an array of
// {"type":"text","text":...} parts, which are concatenated.
type messageContent struct {
	Text string
	// NonText names the first part whose type is not "text", if any.
	NonText string
}

func (c *messageContent) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		*c = messageContent{}
		return nil
	case len(data) > 0 && data[0] == '"':
		return json.Unmarshal(data, &c.Text)
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(data, &parts); err != nil {
		return fieldErrorf("messages.content", "A message's content must be a string or an array of text parts.")
	}
	var text strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			c.NonText = p.Type
			continue
		}
		text.WriteString(p.Text)
	}
	c.Text = text.String()
	return nil
}

// stopList is "stop": a string, an array of strings, or null.
type stopList []string

func (s *stopList) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		*s = nil
		return nil
	case len(data) > 0 && data[0] == '"':
		var one string
		if err := json.Unmarshal(data, &one); err != nil {
			return err
		}
		*s = stopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return fieldErrorf("stop", "stop must be a string or an array of strings.")
	}
	*s = many
	return nil
}

// promptList is the completions "prompt": a string, an array of strings, an
// array of token ids, or an array of arrays of token ids. Exactly one of
// Texts and Tokens is set after a successful decode.
type promptList struct {
	Texts  []string
	Tokens [][]int32
}

var errPromptShape = fieldErrorf("prompt", "prompt must be a string, an array of strings, an array of token ids or an array of arrays of token ids.")

func (p *promptList) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var one string
		if err := json.Unmarshal(data, &one); err != nil {
			return err
		}
		*p = promptList{Texts: []string{one}}
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(data, &items); err != nil || items == nil {
		return errPromptShape
	}
	if len(items) == 0 {
		*p = promptList{Texts: []string{}}
		return nil
	}
	switch first := bytes.TrimSpace(items[0]); {
	case len(first) > 0 && first[0] == '"':
		var texts []string
		if err := json.Unmarshal(data, &texts); err != nil {
			return errPromptShape
		}
		*p = promptList{Texts: texts}
	case len(first) > 0 && first[0] == '[':
		var lists [][]int32
		if err := json.Unmarshal(data, &lists); err != nil {
			return errPromptShape
		}
		*p = promptList{Tokens: lists}
	default:
		var ids []int32
		if err := json.Unmarshal(data, &ids); err != nil {
			return errPromptShape
		}
		*p = promptList{Tokens: [][]int32{ids}}
	}
	return nil
}

// decodeJSON parses a request body into v, turning decoding failures into
// *FieldError naming the field when encoding/json tells which.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return fieldErrorf("", "The request body is empty; expected a JSON object.")
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var field *FieldError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &field):
		return field
	case errors.As(err, &typeErr):
		field := strings.TrimPrefix(typeErr.Field, "samplingFields.")
		return fieldErrorf(field, "Invalid type for %q: expected %s, got a JSON %s.", field, typeErr.Type, typeErr.Value)
	}
	return fieldErrorf("", "The request body is not valid JSON: %v.", err)
}
