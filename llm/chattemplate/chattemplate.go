package chattemplate

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
)

// Errors produced by Compile and Render. ErrTemplateRaised and
// ErrOutputLimit are about the client's conversation (HTTP 400); ErrTemplate
// and ErrRender are about the model's template or the server (HTTP 500).
var (
	// ErrTemplate: the template source does not parse (or nests too deep).
	ErrTemplate = errors.New("chattemplate: invalid template")
	// ErrTemplateRaised: the template called raise_exception; the message
	// says what the template rejected in the input (HTTP 400).
	ErrTemplateRaised = errors.New("chattemplate: template rejected the input")
	// ErrRender: evaluating the template failed (undefined attribute, type
	// error, step budget or nesting exceeded).
	ErrRender = errors.New("chattemplate: render failed")
	// ErrOutputLimit: the rendered prompt exceeds Options.MaxOutputBytes.
	ErrOutputLimit = errors.New("chattemplate: rendered prompt exceeds the output limit")
)

// Defaults for Options fields left zero.
const (
	DefaultMaxOutputBytes = 1 << 20
	DefaultMaxSteps       = 1 << 20
)

// maxRange mirrors jinja2.sandbox.MAX_RANGE, which transformers' sandboxed
// environment applies to range().
const maxRange = 100000

// maxSourceNesting caps bracket nesting in the source; real templates stay
// below 20, and the cap keeps the recursive-descent parser's stack small.
const maxSourceNesting = 200

// Message is one chat turn. Content is plain text (the OpenAI layer flattens
// text parts before rendering).
type Message struct {
	Role    string
	Content string
}

// Input is what one Render call exposes to the template.
type Input struct {
	Messages            []Message
	AddGenerationPrompt bool
	// BOSToken and EOSToken are exposed as bos_token and eos_token.
	BOSToken, EOSToken string
	// Extra holds other variables (tools, date_string, ...). Values may be
	// Go scalars, slices and maps (read with sorted keys), or
	// json.RawMessage, decoded as Python's json module would: object key
	// order kept, integer literals as ints. Invalid JSON fails Render with
	// ErrRender. Extra never overrides the variables above.
	Extra map[string]any
}

// Options tune a Template. The zero value gives the documented defaults.
type Options struct {
	// MaxOutputBytes caps the rendered prompt; 0 means DefaultMaxOutputBytes
	// (1 MiB).
	MaxOutputBytes int
	// MaxSteps caps loop iterations plus macro calls in one Render; 0 means
	// DefaultMaxSteps (1,048,576).
	MaxSteps int
	// Now is the clock behind strftime_now; nil means time.Now.
	Now func() time.Time
}

// Template is a compiled chat template. It is immutable and safe for
// concurrent use.
type Template struct {
	compiled *exec.Template
	opts     Options
}

// Compile parses a chat template with the default Options.
func Compile(source string) (*Template, error) {
	return CompileWithOptions(source, Options{})
}

// CompileWithOptions parses a chat template. Syntax errors are reported as
// ErrTemplate wrapped with the parser's message.
func CompileWithOptions(source string, opts Options) (t *Template, err error) {
	if opts.MaxOutputBytes <= 0 {
		opts.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if opts.MaxSteps <= 0 {
		opts.MaxSteps = DefaultMaxSteps
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if depth := sourceNesting(source); depth > maxSourceNesting {
		return nil, fmt.Errorf("%w: nesting depth %d exceeds %d", ErrTemplate, depth, maxSourceNesting)
	}
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("%w: parser panic: %v", ErrTemplate, p)
		}
	}()
	source = protectInlineTags(source)
	loader, err := loaders.NewMemoryLoader(map[string]string{rootName: source})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTemplate, err)
	}
	compiled, err := exec.NewTemplate(rootName, jinjaConfig(), loader, environment)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrTemplate, parseMessage(err, source))
	}
	fixNegativeIndexes(compiled.Root())
	return &Template{compiled: compiled, opts: opts}, nil
}

// rootName is the template's name in its one-entry loader.
const rootName = "/chat_template"

// jinjaConfig is transformers' environment: trim_blocks and lstrip_blocks
// on, keep_trailing_newline off.
func jinjaConfig() *config.Config {
	c := config.New()
	c.TrimBlocks = true
	c.LeftStripBlocks = true
	return c
}

// parseMessage strips gonja's "failed to parse template '<whole source>':"
// prefix, which would repeat the template in every error.
func parseMessage(err error, source string) string {
	return strings.TrimPrefix(err.Error(), "failed to parse template '"+source+"': ")
}

// sourceNesting returns the deepest nesting of (, [, { in source, a cheap
// upper bound for the parser's recursion depth.
func sourceNesting(source string) int {
	depth, deepest := 0, 0
	for i := 0; i < len(source); i++ {
		switch source[i] {
		case '(', '[', '{':
			depth++
			deepest = max(deepest, depth)
		case ')', ']', '}':
			depth = max(depth-1, 0)
		}
	}
	return deepest
}

// Render renders the template for one conversation.
func (t *Template) Render(in Input) (out string, err error) {
	state := &renderState{
		out:      limitedBuilder{limit: t.opts.MaxOutputBytes},
		maxSteps: t.opts.MaxSteps,
	}
	defer func() {
		if p := recover(); p != nil {
			out, err = "", fmt.Errorf("%w: panic: %v", ErrRender, p)
		}
	}()
	vars, err := t.variables(in, state)
	if err != nil {
		return "", err
	}
	execErr := t.compiled.Execute(&state.out, exec.NewContext(vars))
	switch {
	case state.raised != nil:
		return "", fmt.Errorf("%w: %s", ErrTemplateRaised, *state.raised)
	case state.out.exceeded:
		return "", fmt.Errorf("%w (%d bytes)", ErrOutputLimit, t.opts.MaxOutputBytes)
	case state.limitErr != nil:
		return "", state.limitErr
	case execErr != nil:
		return "", fmt.Errorf("%w: %v", ErrRender, execErr)
	}
	return state.out.String(), nil
}

// variables builds the render context: Extra first, so that the standard
// variables win.
func (t *Template) variables(in Input, state *renderState) (map[string]any, error) {
	vars := make(map[string]any, len(in.Extra)+8)
	for name, value := range in.Extra {
		converted, err := fromGo(value)
		if err != nil {
			return nil, fmt.Errorf("%w: Extra[%q]: invalid JSON: %v", ErrRender, name, err)
		}
		vars[name] = converted
	}
	messages := make([]any, len(in.Messages))
	for i, m := range in.Messages {
		messages[i] = newDict("role", m.Role, "content", m.Content)
	}
	vars["messages"] = messages
	vars["add_generation_prompt"] = in.AddGenerationPrompt
	vars["bos_token"] = in.BOSToken
	vars["eos_token"] = in.EOSToken
	vars["raise_exception"] = state.raiseException
	vars["strftime_now"] = func(args *exec.VarArgs) string {
		format := ""
		if len(args.Args) > 0 {
			format = args.Args[0].String()
		}
		return strftime(t.opts.Now(), format)
	}
	vars[stateKey] = state
	return vars, nil
}
