package openai

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/modelserver/modelserver/internal/shutdown"
)

// predictRequest is the body of the Truss predict route and of a
// WebSocket message: chat messages or a completions prompt, the sampling
// fields of the OpenAI routes, and stream.
type predictRequest struct {
	samplingFields
	Messages []chatMessage `json:"messages"`
	Prompt   *promptList   `json:"prompt"`
}

// predictPlan validates a predict request through the chat or completions
// rules, whichever its body uses. "model" is ignored: the Truss route names
// the model already, and Truss ignores the name in it.
func (a *API) predictPlan(m Model, body []byte) (*plan, error) {
	var req predictRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, err
	}
	req.Model = ""
	switch {
	case req.Messages != nil && req.Prompt != nil:
		return nil, fieldErrorf("prompt", "Send either messages or prompt, not both.")
	case req.Messages != nil:
		return a.chatPlan(m, &chatRequest{samplingFields: req.samplingFields, Messages: req.Messages})
	case req.Prompt != nil:
		return a.completionPlan(m, &completionRequest{samplingFields: req.samplingFields, Prompt: *req.Prompt})
	}
	return nil, fieldErrorf("messages", "Send messages (a chat) or prompt (a completion).")
}

// Truss's error headers (truss-wire.md §1.1): the model server's service id
// and who is to blame.
const (
	headerErrorSource = "X-BASETEN-ERROR-SOURCE"
	headerErrorCode   = "X-BASETEN-ERROR-CODE"
	errorSourceServer = "04"
	trussCodeModel    = "600"
	trussCodeClient   = "700"
	// trussNotReady must stay byte-for-byte Truss's: its control proxy
	// matches "model is not ready".
	trussNotReady = "Model with name model is not ready."
)

// writeTrussError answers like Truss: {"error": message} with Baseten's
// error headers.
func (a *API) writeTrussError(w http.ResponseWriter, err error) {
	e := apiErrorFor(err)
	a.logFailure(e, err)
	message, code := e.Message, trussCodeModel
	switch {
	case errors.Is(err, ErrNotReady):
		message = trussNotReady
	case e.Status >= 400 && e.Status < 500 && e.Status != http.StatusTooManyRequests && e.Status != StatusClientClosedRequest:
		code = trussCodeClient
	}
	w.Header().Set(headerErrorSource, errorSourceServer)
	w.Header().Set(headerErrorCode, code)
	writeJSON(w, e.Status, map[string]string{"error": message})
}

// PredictHandler serves the Truss predict route for the LLM, for
// server.Model.Handler. The body is JSON: {"messages": [...]} or
// {"prompt": ...} with the OpenAI sampling fields and "stream".
//
//   - stream false: 200 with the completion as a JSON string, or a JSON
//     array of strings when the request makes several (n > 1 or several
//     prompts), as a Chainlet returning str / list[str] would.
//   - stream true: a chunked application/octet-stream body of raw UTF-8
//     text deltas, flushed per token, as a Truss generator streams;
//     requires a single sequence. With Accept exactly application/json
//     from a client whose User-Agent does not name openai, the text is
//     gathered into one JSON string instead (Truss's gather quirk).
//
// Errors before the answer starts are Truss's {"error": msg} with the
// X-BASETEN-ERROR-* headers; an error mid-stream ends the stream (Truss
// logs it and closes the body cleanly).
func (a *API) PredictHandler() http.Handler {
	return http.HandlerFunc(a.handlePredict)
}

func (a *API) handlePredict(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	m, err := a.readyModel()
	if err != nil {
		a.writeTrussError(w, err)
		return
	}
	body, err := a.readBody(w, r)
	if err != nil {
		a.writeTrussError(w, err)
		return
	}
	p, err := a.predictPlan(m, body)
	if err != nil {
		a.writeTrussError(w, err)
		return
	}
	gather := p.stream && r.Header.Get("Accept") == "application/json" && !strings.Contains(strings.ToLower(r.UserAgent()), "openai")
	if p.stream && !gather && p.sequences() > 1 {
		a.writeTrussError(w, fieldErrorf("n", "A streamed predict makes one completion; n and the prompts must make one sequence."))
		return
	}
	run, err := a.startRun(r.Context(), m, p, start)
	if err != nil {
		a.writeTrussError(w, err)
		return
	}
	defer run.stop()
	if p.stream && !gather {
		a.streamText(w, r.Context(), run)
		return
	}
	texts := make([]strings.Builder, p.sequences())
	for !run.done() {
		e, err := run.next(r.Context())
		if err != nil {
			a.writeTrussError(w, err) // the client left: 499 for the access log
			return
		}
		if err := sequenceError(r.Context(), e.ev); err != nil {
			a.writeTrussError(w, err)
			return
		}
		texts[e.index].WriteString(e.ev.Text)
	}
	if len(texts) == 1 {
		writeJSON(w, http.StatusOK, texts[0].String())
		return
	}
	out := make([]string, len(texts))
	for i := range texts {
		out[i] = texts[i].String()
	}
	writeJSON(w, http.StatusOK, out)
}

// streamText writes one sequence's text deltas as a chunked octet-stream.
func (a *API) streamText(w http.ResponseWriter, ctx context.Context, run *run) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	for !run.done() {
		e, err := run.next(ctx)
		if err != nil {
			return
		}
		if err := sequenceError(ctx, e.ev); err != nil {
			if ctx.Err() == nil {
				a.logFailure(apiErrorFor(err), err)
			}
			return
		}
		if e.ev.Text == "" {
			continue
		}
		if _, err := w.Write([]byte(e.ev.Text)); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// wsFrame is one message the LLM WebSocket sends; Type is "delta", "done"
// or "error".
type wsFrame struct {
	Type          string       `json:"type"`
	Index         *int         `json:"index,omitempty"`
	Text          *string      `json:"text,omitempty"`
	FinishReasons []string     `json:"finish_reasons,omitempty"`
	Usage         *usage       `json:"usage,omitempty"`
	Error         *errorObject `json:"error,omitempty"`
}

func deltaFrame(index int, text string) wsFrame {
	return wsFrame{Type: "delta", Index: &index, Text: &text}
}

func errorFrame(err error) wsFrame {
	obj := apiErrorFor(err).body().Error
	return wsFrame{Type: "error", Error: &obj}
}

// answerFrames runs one WebSocket request and sends its frames through
// send, which only the caller's goroutine calls.
func (a *API) answerFrames(ctx context.Context, m Model, body []byte, send func(wsFrame) error) error {
	start := time.Now()
	p, err := a.predictPlan(m, body)
	if err != nil {
		return send(errorFrame(err))
	}
	run, err := a.startRun(ctx, m, p, start)
	if err != nil {
		return send(errorFrame(err))
	}
	defer run.stop()
	u := usage{}
	for _, prompt := range p.prompts {
		u.PromptTokens += len(prompt)
	}
	reasons := make([]string, p.sequences())
	for !run.done() {
		e, err := run.next(ctx)
		if err == nil {
			err = sequenceError(ctx, e.ev)
		}
		if err != nil {
			if ctx.Err() != nil && !shutdown.Cancelled(ctx) {
				return ctx.Err() // the client left
			}
			a.logFailure(apiErrorFor(err), err)
			if err := send(errorFrame(err)); err != nil || ctx.Err() == nil {
				return err
			}
			return context.Cause(ctx) // the shutdown ends the connection too
		}
		if e.ev.Text != "" {
			if err := send(deltaFrame(e.index, e.ev.Text)); err != nil {
				return err
			}
		}
		if e.ev.Finish != "" {
			reasons[e.index] = string(e.ev.Finish)
			u.CompletionTokens += e.ev.Usage.CompletionTokens
		}
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return send(wsFrame{Type: "done", FinishReasons: reasons, Usage: &u})
}

// marshalFrame encodes a frame; frames hold only strings and ints.
func marshalFrame(f wsFrame) []byte {
	b, _ := marshalJSON(f)
	return b
}
