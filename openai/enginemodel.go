package openai

import (
	"context"
	"errors"
	"fmt"

	"github.com/modelserver/modelserver/llm"
	"github.com/modelserver/modelserver/llm/chattemplate"
	"github.com/modelserver/modelserver/llm/tokenizer"
)

// EngineModelConfig names the parts NewEngineModel joins.
type EngineModelConfig struct {
	// Name is the served model name.
	Name string
	// ContextLength is the engine's per-sequence token limit.
	ContextLength int
	// Generator runs sequences (an *llm.Engine).
	Generator llm.Generator
	// Tokenizer is the model's tokenizer.
	Tokenizer *tokenizer.Tokenizer
	// Template is the compiled chat template; nil makes chat requests fail
	// with 400 (a base model without one).
	Template *chattemplate.Template
}

// errNoChatTemplate is a chat request to a model without a chat template.
var errNoChatTemplate = fmt.Errorf("%w: this model has no chat template; use /v1/completions", ErrPromptRejected)

type engineModel struct {
	cfg      EngineModelConfig
	bos, eos string
}

// NewEngineModel adapts an llm engine, its tokenizer and chat template to
// Model.
func NewEngineModel(cfg EngineModelConfig) Model {
	conf := cfg.Tokenizer.Config()
	return &engineModel{cfg: cfg, bos: conf.BOSToken, eos: conf.EOSToken}
}

func (m *engineModel) Name() string       { return m.cfg.Name }
func (m *engineModel) ContextLength() int { return m.cfg.ContextLength }
func (m *engineModel) VocabSize() int     { return m.cfg.Tokenizer.VocabSize() }
func (m *engineModel) Stats() llm.Stats   { return m.cfg.Generator.Stats() }

func (m *engineModel) Generate(ctx context.Context, req llm.Request) (<-chan llm.Event, error) {
	stream, err := m.cfg.Generator.Generate(ctx, req)
	if err != nil {
		return nil, err
	}
	return stream.Events(), nil
}

func (m *engineModel) Tokenize(text string, addSpecial bool) []int32 {
	return m.cfg.Tokenizer.Encode(text, addSpecial)
}

func (m *engineModel) Detokenize(ids []int32, skipSpecial bool) string {
	return m.cfg.Tokenizer.Decode(ids, skipSpecial)
}

func (m *engineModel) TokenText(id int32) string { return m.cfg.Tokenizer.TokenText(id) }

// RenderChat applies the template. Every template failure is the
// request's fault as far as the client can act on it (vLLM answers 400 too),
// so all wrap ErrPromptRejected.
func (m *engineModel) RenderChat(messages []Message, addGenerationPrompt bool) (string, error) {
	if m.cfg.Template == nil {
		return "", errNoChatTemplate
	}
	in := chattemplate.Input{Messages: make([]chattemplate.Message, len(messages)), AddGenerationPrompt: addGenerationPrompt, BOSToken: m.bos, EOSToken: m.eos}
	for i, msg := range messages {
		in.Messages[i] = chattemplate.Message{Role: msg.Role, Content: msg.Content}
	}
	out, err := m.cfg.Template.Render(in)
	if err != nil {
		if errors.Is(err, ErrPromptRejected) {
			return "", err
		}
		return "", fmt.Errorf("%w: %w", ErrPromptRejected, err)
	}
	return out, nil
}

// ModelFromEngine adapts an opened engine with its own tokenizer and chat
// template. name is the served name; empty means the engine's model name.
func ModelFromEngine(e *llm.Engine, name string) Model {
	if name == "" {
		name = e.ModelName()
	}
	return NewEngineModel(EngineModelConfig{
		Name: name, ContextLength: e.ContextLength(), Generator: e, Tokenizer: e.Tokenizer(), Template: e.ChatTemplate(),
	})
}
