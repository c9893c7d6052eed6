package chattemplate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/modelserver/modelserver/internal/phi3assets"
)

// namedTemplate is a real model's chat template under test.
type namedTemplate struct {
	name     string
	source   string
	bos, eos string
}

// specialTokens are each model's bos/eos strings; templates not listed
// use <s> and </s>.
var specialTokens = map[string][2]string{
	"phi3-mini":                   {"<s>", "<|endoftext|>"},
	"phi3-mini-2024-04":           {"<s>", "<|endoftext|>"},
	"phi3-vision":                 {"<s>", "<|endoftext|>"},
	"llama-3-8b-instruct":         {"<|begin_of_text|>", "<|eot_id|>"},
	"llama-3.2-3b-instruct":       {"<|begin_of_text|>", "<|eot_id|>"},
	"gemma-2-2b-it":               {"<bos>", "<eos>"},
	"qwen2.5-instruct":            {"", "<|im_end|>"},
	"deepseek-coder-33b-instruct": {"<｜begin▁of▁sentence｜>", "<|EOT|>"},
}

// realTemplates returns Phi3Mini, Phi-3-vision's template and every
// testdata/templates/*.jinja, sorted by name.
func realTemplates(tb testing.TB) []namedTemplate {
	tb.Helper()
	var config struct {
		ChatTemplate string `json:"chat_template"`
	}
	if err := json.Unmarshal(phi3assets.TokenizerConfigJSON, &config); err != nil {
		tb.Fatal(err)
	}
	sources := map[string]string{"phi3-mini": Phi3Mini, "phi3-vision": config.ChatTemplate}
	paths, err := filepath.Glob(filepath.Join("testdata", "templates", "*.jinja"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no templates in testdata/templates (%v)", err)
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		sources[strings.TrimSuffix(filepath.Base(path), ".jinja")] = string(data)
	}
	var out []namedTemplate
	for name, source := range sources {
		tokens, ok := specialTokens[name]
		if !ok {
			tokens = [2]string{"<s>", "</s>"}
		}
		out = append(out, namedTemplate{name: name, source: source, bos: tokens[0], eos: tokens[1]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// conversation is one Input shape rendered with every real template.
type conversation struct {
	name                string
	messages            []Message
	addGenerationPrompt bool
	extra               map[string]json.RawMessage
}

const weatherTool = `{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. Zürich"}, "days": {"type": "integer", "minimum": 1}}, "required": ["city"]}}}`

var conversations = []conversation{
	{name: "user-only", messages: []Message{{"user", "Hello, how are you?"}}, addGenerationPrompt: true},
	{name: "system-first", messages: []Message{
		{"system", "You are a terse assistant."},
		{"user", "What is 2+2?"},
	}, addGenerationPrompt: true},
	{name: "multi-turn", messages: []Message{
		{"user", "Hello, how are you?"},
		{"assistant", "I'm doing great. How can I help you today?"},
		{"user", "I'd like to show off how chat templating works!"},
	}, addGenerationPrompt: true},
	{name: "assistant-last", messages: []Message{
		{"user", "Name a colour."},
		{"assistant", "Blue."},
	}},
	{name: "empty-content", messages: []Message{{"user", ""}}, addGenerationPrompt: true},
	{name: "unicode", messages: []Message{
		{"user", "Grüß dich! 你好 🦙 — «ça va?»\ttab"},
		{"assistant", "Très bien, merci. 😀"},
		{"user", "Ünïcödé again: ß ∑ 𝔘"},
	}, addGenerationPrompt: true},
	{name: "jinja-braces", messages: []Message{
		{"user", "{{ 7*7 }} {% if true %}x{% endif %} {# note #} {{ raise_exception('no') }} }}{{"},
	}, addGenerationPrompt: true},
	{name: "whitespace", messages: []Message{{"user", "  padded on both sides \n\n"}}, addGenerationPrompt: true},
	{name: "roles-not-alternating", messages: []Message{
		{"user", "first"},
		{"user", "second"},
	}, addGenerationPrompt: true},
	{name: "tools", messages: []Message{
		{"system", "Use tools when useful."},
		{"user", "Weather in Zürich?"},
	}, addGenerationPrompt: true, extra: map[string]json.RawMessage{"tools": json.RawMessage("[" + weatherTool + "]")}},
}

// input builds the Input for a template and conversation. date_string is
// fixed so that Llama 3.x's output does not depend on the clock.
func (c conversation) input(tmpl namedTemplate) Input {
	extra := map[string]any{"date_string": "26 Jul 2024"}
	for name, value := range c.extra {
		extra[name] = value
	}
	return Input{
		Messages:            c.messages,
		AddGenerationPrompt: c.addGenerationPrompt,
		BOSToken:            tmpl.bos,
		EOSToken:            tmpl.eos,
		Extra:               extra,
	}
}

// variables is the same input as JSON for the JavaScript renderer.
func (c conversation) variables(tmpl namedTemplate) map[string]any {
	type jsMessage struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	messages := make([]jsMessage, len(c.messages))
	for i, m := range c.messages {
		messages[i] = jsMessage{Role: m.Role, Content: m.Content}
	}
	vars := map[string]any{"date_string": "26 Jul 2024"}
	for name, value := range c.extra {
		vars[name] = value
	}
	vars["messages"] = messages
	vars["add_generation_prompt"] = c.addGenerationPrompt
	vars["bos_token"] = tmpl.bos
	vars["eos_token"] = tmpl.eos
	return vars
}
