package openai

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/modelserver/modelserver/llm"
)

func (a *API) handleChat(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	m, req, ok := readRequest[chatRequest](a, w, r)
	if !ok {
		return
	}
	p, err := a.chatPlan(m, req)
	if err != nil {
		a.writeError(w, err)
		return
	}
	a.answer(w, r, m, p, newChatShape(m.Name(), p), start)
}

// chatPlan validates a chat request and renders and tokenizes its prompt.
func (a *API) chatPlan(m Model, req *chatRequest) (*plan, error) {
	p := &plan{}
	if err := validateSampling(m, &req.samplingFields, p, a.opts.MaxSequencesPerRequest); err != nil {
		return nil, err
	}
	if req.TopLogprobs != nil {
		if *req.TopLogprobs < 0 || *req.TopLogprobs > maxTopLogprobs {
			return nil, fieldErrorf("top_logprobs", "top_logprobs must be between 0 and %d, got %d.", maxTopLogprobs, *req.TopLogprobs)
		}
		if !req.Logprobs && *req.TopLogprobs > 0 {
			return nil, fieldErrorf("top_logprobs", "top_logprobs requires logprobs to be true.")
		}
		p.params.TopLogprobs = *req.TopLogprobs
	}
	p.logprobs = req.Logprobs
	p.params.Logprobs = req.Logprobs
	messages, err := parseMessages(req.Messages)
	if err != nil {
		return nil, err
	}
	prompt, err := m.RenderChat(messages, true)
	if err != nil {
		return nil, err
	}
	p.prompts = [][]int32{m.Tokenize(prompt, false)}
	return p, checkPrompts(m, p, "messages", a.opts.MaxSequencesPerRequest)
}

// parseMessages checks roles and content. "developer" is OpenAI's newer
// name for "system".
func parseMessages(in []chatMessage) ([]Message, error) {
	if len(in) == 0 {
		return nil, fieldErrorf("messages", "messages must hold at least one message.")
	}
	out := make([]Message, len(in))
	for i, msg := range in {
		role := msg.Role
		switch role {
		case "system", "user", "assistant":
		case "developer":
			role = "system"
		default:
			return nil, fieldErrorf("messages", "messages[%d].role must be system, user or assistant, got %q.", i, msg.Role)
		}
		if msg.Content.NonText != "" {
			return nil, fieldErrorf("messages", "messages[%d].content has a %q part; only text parts are supported.", i, msg.Content.NonText)
		}
		out[i] = Message{Role: role, Content: msg.Content.Text}
	}
	return out, nil
}

// Chat completion objects (OpenAI's chat.completion and
// chat.completion.chunk).
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   usage        `json:"usage"`
}

type chatChoice struct {
	Index        int           `json:"index"`
	Message      chatReply     `json:"message"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason string        `json:"finish_reason"`
}

type chatReply struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatLogprobs struct {
	Content []chatTokenLogprob `json:"content"`
}

type chatTokenLogprob struct {
	Token       string           `json:"token"`
	Logprob     float64          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []chatTopLogprob `json:"top_logprobs"`
}

type chatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

type chatChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []chatChunkChoice `json:"choices"`
	// Usage is null on every chunk but the last when include_usage is set,
	// and absent otherwise, as OpenAI streams it.
	Usage json.RawMessage `json:"usage,omitempty"`
}

type chatChunkChoice struct {
	Index        int           `json:"index"`
	Delta        chatDelta     `json:"delta"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

type chatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chatShape struct {
	id, model    string
	created      int64
	includeUsage bool
	logprobs     bool
}

func newChatShape(model string, p *plan) *chatShape {
	return &chatShape{id: responseID("chatcmpl-"), model: model, created: time.Now().Unix(), includeUsage: p.includeUsage, logprobs: p.logprobs}
}

func (s *chatShape) chunk(c chatChunkChoice) chatChunk {
	out := chatChunk{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model, Choices: []chatChunkChoice{c}}
	if s.includeUsage {
		out.Usage = json.RawMessage("null")
	}
	return out
}

func (s *chatShape) opening(i int) any {
	empty := ""
	return s.chunk(chatChunkChoice{Index: i, Delta: chatDelta{Role: "assistant", Content: &empty}})
}

func (s *chatShape) delta(i int, text string, lp *tokenLogprob) any {
	c := chatChunkChoice{Index: i, Delta: chatDelta{Content: &text}}
	if lp != nil {
		c.Logprobs = &chatLogprobs{Content: []chatTokenLogprob{chatLogprob(*lp)}}
	}
	return s.chunk(c)
}

func (s *chatShape) finish(i int, reason llm.FinishReason) any {
	r := string(reason)
	return s.chunk(chatChunkChoice{Index: i, FinishReason: &r})
}

func (s *chatShape) usageChunk(u usage) any {
	body, _ := marshalJSON(u) // a struct of ints always marshals
	return chatChunk{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model, Choices: []chatChunkChoice{}, Usage: body}
}

func (s *chatShape) response(choices []choiceResult, u usage) any {
	out := chatCompletion{ID: s.id, Object: "chat.completion", Created: s.created, Model: s.model, Choices: make([]chatChoice, len(choices)), Usage: u}
	for i := range choices {
		c := &choices[i]
		out.Choices[i] = chatChoice{Index: i, Message: chatReply{Role: "assistant", Content: c.text.String()}, FinishReason: string(c.finish)}
		if s.logprobs {
			lps := &chatLogprobs{Content: make([]chatTokenLogprob, len(c.logprobs))}
			for j, lp := range c.logprobs {
				lps.Content[j] = chatLogprob(lp)
			}
			out.Choices[i].Logprobs = lps
		}
	}
	return out
}

func chatLogprob(lp tokenLogprob) chatTokenLogprob {
	out := chatTokenLogprob{Token: lp.token, Logprob: lp.logprob, Bytes: utf8Bytes(lp.token), TopLogprobs: make([]chatTopLogprob, len(lp.top))}
	for i, t := range lp.top {
		out.TopLogprobs[i] = chatTopLogprob{Token: t.Text, Logprob: finiteLogprob(t.Logprob), Bytes: utf8Bytes(t.Text)}
	}
	return out
}

// utf8Bytes is a token's bytes as OpenAI lists them (a token may hold part
// of a character, which its string cannot show).
func utf8Bytes(s string) []int {
	out := make([]int, len(s))
	for i := range len(s) {
		out[i] = int(s[i])
	}
	return out
}
