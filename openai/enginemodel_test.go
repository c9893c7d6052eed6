package openai

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/modelserver/modelserver/internal/phi3assets"
	"github.com/modelserver/modelserver/llm/chattemplate"
	"github.com/modelserver/modelserver/llm/tokenizer"
)

// phi3Model adapts the real Phi-3 tokenizer and chat template, with no
// generator (these tests do not generate).
func phi3Model(t testing.TB) Model {
	t.Helper()
	tok := mustTokenizer(t)
	tmpl, err := chattemplate.Compile(tok.Config().ChatTemplate)
	if err != nil {
		t.Fatal(err)
	}
	return NewEngineModel(EngineModelConfig{Name: "phi3", ContextLength: 4096, Tokenizer: tok, Template: tmpl})
}

func TestEngineModelChat(t *testing.T) {
	m := phi3Model(t)
	prompt, err := m.RenderChat([]Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"; prompt != want {
		t.Errorf("RenderChat = %q, want %q", prompt, want)
	}
	ids := m.Tokenize(prompt, false)
	if got := m.Detokenize(ids, true); !strings.Contains(got, "Be brief.") || strings.Contains(got, "<|user|>") {
		t.Errorf("Detokenize(Tokenize(%q), skipSpecial) = %q, want the text without special tokens", prompt, got)
	}
	if len(ids) < 5 || m.VocabSize() < 32000 {
		t.Errorf("%d prompt tokens, vocabulary %d: want a real tokenizer", len(ids), m.VocabSize())
	}

	noTemplate := NewEngineModel(EngineModelConfig{Name: "base", Tokenizer: mustTokenizer(t)})
	if _, err := noTemplate.RenderChat([]Message{{Role: "user", Content: "x"}}, true); !errors.Is(err, ErrPromptRejected) {
		t.Errorf("RenderChat without a template: %v, want ErrPromptRejected", err)
	}
}

func TestEngineModelTokenizeRoute(t *testing.T) {
	ts := newTestServer(t, nil)
	m := phi3Model(t)
	ts.api.SetModel(m)
	_, body := ts.post(t, "/tokenize", `{"prompt":"Hello world","return_token_strs":true}`)
	got := decode[tokenizeResponse](t, string(body))
	want := m.Tokenize("Hello world", true)
	if len(got.Tokens) != len(want) || got.Count != len(want) || len(got.TokenStrs) != len(want) || got.MaxModelLen != 4096 {
		t.Fatalf("tokenize = %s, want ids %v", body, want)
	}
	_, body = ts.post(t, "/detokenize", `{"tokens":[15043,3186]}`)
	if string(body) != `{"prompt":"Hello world"}` {
		t.Errorf("detokenize = %s", body)
	}
}

// mustTokenizer loads the Phi-3 tokenizer once per test binary; loading is
// slow under the race detector.
func mustTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := loadPhi3Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var loadPhi3Tokenizer = sync.OnceValues(func() (*tokenizer.Tokenizer, error) {
	return tokenizer.Load(phi3assets.TokenizerJSON, phi3assets.TokenizerConfigJSON)
})
