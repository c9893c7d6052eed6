package chains

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
)

// Caller is anything with a Chainlet's RunRemote: a Dep, a Chainlet itself,
// or a mock.
type Caller[In, Out any] interface {
	RunRemote(ctx context.Context, in In) (Out, error)
}

// Dep is a typed client to a dependency Chainlet whose RunRemote takes In and
// returns Out. Declare it as an exported field of the calling Chainlet with
// a tag naming the target and its DepOptions; the Chain binds it (to HTTP in
// remote mode, to in-process calls through serialization in local mode)
// unless it holds a mock.
//
// RunRemote is safe for concurrent use; concurrent calls are bounded by the
// dependency's concurrency limit. For a streaming dependency (Out is
// iter.Seq2[T, error]) the sequence can be ranged over once; the connection
// is held until the loop ends or the call's context is done.
type Dep[In, Out any] struct {
	mock  Caller[In, Out]
	bound Caller[In, Out]
}

// Mock returns a Dep that calls c directly instead of the dependency, for
// RunLocal (the mock gets no serialization).
func Mock[In, Out any](c Caller[In, Out]) Dep[In, Out] {
	return Dep[In, Out]{mock: c}
}

// RunRemote calls the dependency.
func (d *Dep[In, Out]) RunRemote(ctx context.Context, in In) (Out, error) {
	switch {
	case d.mock != nil:
		return d.mock.RunRemote(ctx, in)
	case d.bound != nil:
		return d.bound.RunRemote(ctx, in)
	}
	var zero Out
	return zero, ErrNotBound
}

// depBinder is how the Chain, which knows Dep fields only by reflection,
// binds them to a transport with their own static types.
type depBinder interface {
	depTypes() (in, out reflect.Type)
	mocked() bool
	bind(t transport, opts DepOptions, llm bool)
	closeIdle()
}

func (d *Dep[In, Out]) depTypes() (reflect.Type, reflect.Type) {
	return reflect.TypeFor[In](), reflect.TypeFor[Out]()
}

func (d *Dep[In, Out]) mocked() bool { return d.mock != nil }

func (d *Dep[In, Out]) closeIdle() { d.CloseIdleConnections() }

// CloseIdleConnections closes the bound client's idle keep-alive
// connections (Serve does this at shutdown); calls may still follow.
func (d *Dep[In, Out]) CloseIdleConnections() {
	if w, ok := d.bound.(*wireCaller[In, Out]); ok {
		w.t.closeIdle()
	}
}

func (d *Dep[In, Out]) bind(t transport, opts DepOptions, llm bool) {
	kind, item := streamOf(reflect.TypeFor[Out]())
	d.bound = &wireCaller[In, Out]{t: t, binary: opts.Binary, stream: kind, item: item, llm: llm}
}

// transport carries one encoded request to a dependency and returns the
// body of its successful answer; failures are *RemoteError or transport
// errors after the dependency's retries. The caller closes the body.
type transport interface {
	call(ctx context.Context, body []byte, binary bool) (io.ReadCloser, error)
	closeIdle()
}

// wireCaller is a bound Dep: it serializes In, and deserializes Out from the
// answer, as the caller's own binary option says (as Truss does).
type wireCaller[In, Out any] struct {
	t      transport
	binary bool
	stream streamKind
	item   reflect.Type
	llm    bool
}

func (w *wireCaller[In, Out]) RunRemote(ctx context.Context, in In) (Out, error) {
	var out Out
	body, err := encodeValue(reflect.ValueOf(&in).Elem(), w.binary)
	if err != nil {
		return out, err
	}
	rc, err := w.t.call(ctx, body, w.binary)
	if err != nil {
		if re, ok := err.(*RemoteError); ok {
			// The call site is the user frame Truss shows for a
			// dependency's error.
			re.frames = userFrames(1)
		}
		return out, err
	}
	if w.stream != notStream {
		seq := makeSeq(ctx, reflect.TypeFor[Out](), w.stream, w.item, rc)
		return seq.Interface().(Out), nil
	}
	defer rc.Close()
	answer, err := io.ReadAll(rc)
	if err != nil {
		return out, fmt.Errorf("chains: reading the answer: %w", err)
	}
	dst := reflect.ValueOf(&out).Elem()
	if w.llm && dst.Kind() == reflect.String {
		text, err := llmText(answer, w.binary)
		if err != nil {
			return out, err
		}
		dst.SetString(text)
		return out, nil
	}
	if err := decodeValue(answer, w.binary, dst); err != nil {
		return out, err
	}
	return out, nil
}

// llmText reads an LLM model's non-streamed answer: a bare string, an object
// with "text", or an OpenAI-style completion (choices[0].message.content or
// choices[0].text).
func llmText(answer []byte, binary bool) (string, error) {
	tree, err := parseTree(answer, binary)
	if err != nil {
		return "", err
	}
	switch x := tree.(type) {
	case string:
		return x, nil
	case map[string]any:
		if s, ok := x["text"].(string); ok {
			return s, nil
		}
		if choices, ok := x["choices"].([]any); ok && len(choices) > 0 {
			if c, ok := choices[0].(map[string]any); ok {
				if m, ok := c["message"].(map[string]any); ok {
					if s, ok := m["content"].(string); ok {
						return s, nil
					}
				}
				if s, ok := c["text"].(string); ok {
					return s, nil
				}
			}
		}
	}
	snippet, _ := json.Marshal(treeForJSON(tree))
	if len(snippet) > 200 {
		snippet = append(snippet[:200], "…"...)
	}
	return "", fmt.Errorf("%w: LLM answer has no text: %s", ErrSerialization, snippet)
}

// NewClient returns a Dep that calls a Chainlet (or a Truss model) at ep
// from outside a Chain, for example a Chain's entrypoint from a Go program.
// name is used in error messages; zero fields of opts take DepOptions'
// defaults. The client forwards the headers of WithForwardedHeaders and sends
// apiKey when it is not empty.
func NewClient[In, Out any](name string, ep Endpoint, opts DepOptions, apiKey string) Dep[In, Out] {
	if opts.Retries == 0 {
		opts.Retries = DefaultRetries
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = DefaultConcurrency
	}
	var d Dep[In, Out]
	d.bind(newHTTPTransport(name, ep, apiKey, opts, nil, slog.Default(), nil), opts, false)
	return d
}
