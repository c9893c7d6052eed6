package openai

import (
	"net/http"
)

// tokenizeRequest is vLLM's POST /tokenize body: either a prompt or chat
// messages.
type tokenizeRequest struct {
	Model               string        `json:"model"`
	Prompt              *string       `json:"prompt"`
	Messages            []chatMessage `json:"messages"`
	AddSpecialTokens    *bool         `json:"add_special_tokens"`
	AddGenerationPrompt *bool         `json:"add_generation_prompt"`
	ReturnTokenStrs     bool          `json:"return_token_strs"`
}

type tokenizeResponse struct {
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len"`
	Tokens      []int32  `json:"tokens"`
	TokenStrs   []string `json:"token_strs"`
}

type detokenizeRequest struct {
	Model  string  `json:"model"`
	Tokens []int32 `json:"tokens"`
}

type detokenizeResponse struct {
	Prompt string `json:"prompt"`
}

func (a *API) handleTokenize(w http.ResponseWriter, r *http.Request) {
	m, req, ok := readRequest[tokenizeRequest](a, w, r)
	if !ok {
		return
	}
	ids, err := tokenize(m, req)
	if err != nil {
		a.writeError(w, err)
		return
	}
	resp := tokenizeResponse{Count: len(ids), MaxModelLen: m.ContextLength(), Tokens: ids}
	if resp.Tokens == nil {
		resp.Tokens = []int32{}
	}
	if req.ReturnTokenStrs {
		resp.TokenStrs = make([]string, len(ids))
		for i, id := range ids {
			resp.TokenStrs[i] = m.TokenText(id)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// tokenize follows vLLM's defaults: a prompt gets special tokens, rendered
// messages do not (the template writes them) and end with the generation
// prompt.
func tokenize(m Model, req *tokenizeRequest) ([]int32, error) {
	if err := checkModelName(m, req.Model); err != nil {
		return nil, err
	}
	switch {
	case req.Prompt != nil && req.Messages != nil:
		return nil, fieldErrorf("prompt", "Send either prompt or messages, not both.")
	case req.Prompt != nil:
		return m.Tokenize(*req.Prompt, optional(req.AddSpecialTokens, true)), nil
	case req.Messages != nil:
		messages, err := parseMessages(req.Messages)
		if err != nil {
			return nil, err
		}
		text, err := m.RenderChat(messages, optional(req.AddGenerationPrompt, true))
		if err != nil {
			return nil, err
		}
		return m.Tokenize(text, optional(req.AddSpecialTokens, false)), nil
	}
	return nil, fieldErrorf("prompt", "Send a prompt or messages.")
}

func optional(v *bool, def bool) bool {
	if v == nil {
		return def
	}
	return *v
}

func (a *API) handleDetokenize(w http.ResponseWriter, r *http.Request) {
	m, req, ok := readRequest[detokenizeRequest](a, w, r)
	if !ok {
		return
	}
	if err := checkModelName(m, req.Model); err != nil {
		a.writeError(w, err)
		return
	}
	vocab := m.VocabSize()
	for _, id := range req.Tokens {
		if id < 0 || int(id) >= vocab {
			a.writeError(w, fieldErrorf("tokens", "Token id %d is outside the vocabulary [0, %d).", id, vocab))
			return
		}
	}
	writeJSON(w, http.StatusOK, detokenizeResponse{Prompt: m.Detokenize(req.Tokens, false)})
}
