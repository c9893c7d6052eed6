package openai

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/modelserver/modelserver/internal/shutdown"
	"github.com/modelserver/modelserver/llm"
)

// usage is OpenAI's token count. Prompt tokens count each prompt once,
// whatever n is; completion tokens sum every choice.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// tokenLogprob is one generated token's log-probability and alternatives,
// before a route shapes it.
type tokenLogprob struct {
	token   string
	logprob float64
	top     []llm.TokenLogprob
	offset  int // byte offset of the token's text in the choice's text
}

// choiceResult accumulates one sequence for a non-streamed answer.
type choiceResult struct {
	text     strings.Builder
	logprobs []tokenLogprob
	finish   llm.FinishReason
}

// shape builds one route's JSON values; each method returns a value for
// encoding/json.
type shape interface {
	// opening is sequence i's first streamed chunk, or nil for none.
	opening(i int) any
	// delta is a streamed chunk with new text of sequence i and, when
	// logprobs were asked for, its token's log-probability.
	delta(i int, text string, lp *tokenLogprob) any
	// finish is sequence i's last streamed chunk.
	finish(i int, reason llm.FinishReason) any
	// usageChunk is the streamed chunk with the request's usage.
	usageChunk(u usage) any
	// response is the whole non-streamed answer.
	response(choices []choiceResult, u usage) any
}

// responseID returns a fresh id with OpenAI's prefix for the route.
func responseID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// finiteLogprob keeps JSON encodable: -Inf (an impossible token) becomes
// OpenAI's -9999.
func finiteLogprob(lp float32) float64 {
	if math.IsInf(float64(lp), 0) || math.IsNaN(float64(lp)) {
		return -9999
	}
	return float64(lp)
}

// answer runs p's sequences and writes the answer as SSE or one JSON body.
// start is the request's arrival.
func (a *API) answer(w http.ResponseWriter, r *http.Request, m *servedModel, p *plan, sh shape, start time.Time) {
	run, err := a.startRun(r.Context(), m, p, start)
	if err != nil {
		a.writeError(w, err)
		return
	}
	defer run.stop()
	u := usage{}
	for _, prompt := range p.prompts {
		u.PromptTokens += len(prompt)
	}
	if p.stream {
		a.streamSSE(w, r.Context(), m, p, sh, run, u)
		return
	}
	choices := make([]choiceResult, p.sequences())
	for !run.done() {
		e, err := run.next(r.Context())
		if err != nil {
			// The client left; the 499 is for the access log and metrics.
			a.writeError(w, err)
			return
		}
		if err := sequenceError(r.Context(), e.ev); err != nil {
			a.writeError(w, err)
			return
		}
		c := &choices[e.index]
		if p.logprobs && e.ev.Token >= 0 {
			c.logprobs = append(c.logprobs, makeLogprob(m, e.ev, c.text.Len()))
		}
		c.text.WriteString(e.ev.Text)
		if e.ev.Finish != "" {
			c.finish = e.ev.Finish
			u.CompletionTokens += e.ev.Usage.CompletionTokens
		}
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	writeJSON(w, http.StatusOK, sh.response(choices, u))
}

// sequenceError is the error a final event reports, if any: the engine's
// failure, or a cancellation the client did not cause (shutdown).
func sequenceError(ctx context.Context, ev llm.Event) error {
	switch ev.Finish {
	case llm.FinishError:
		if ev.Err != nil {
			return ev.Err
		}
		return errSequenceFailed
	case llm.FinishCancelled:
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return llm.ErrClosed
	}
	return nil
}

func makeLogprob(m Model, ev llm.Event, offset int) tokenLogprob {
	return tokenLogprob{token: m.TokenText(ev.Token), logprob: finiteLogprob(ev.Logprob), top: ev.TopLogprobs, offset: offset}
}

// sseWriter writes Server-Sent Events; only the handler's goroutine uses it.
// One buffer and encoder serve every event of the response.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
	enc *json.Encoder // writes into buf, without HTML escaping
	err error         // the first write error; later writes are skipped
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	s.enc = json.NewEncoder(&s.buf)
	s.enc.SetEscapeHTML(false)
	return s
}

// event writes one "data: <json>" event without flushing.
func (s *sseWriter) event(v any) {
	if s.err != nil {
		return
	}
	s.buf.Reset()
	s.buf.WriteString("data: ")
	if s.err = s.enc.Encode(v); s.err != nil { // Encode ends the line
		return
	}
	s.buf.WriteByte('\n')
	_, s.err = s.w.Write(s.buf.Bytes())
}

// done writes the stream's last event, data: [DONE].
func (s *sseWriter) done() {
	if s.err == nil {
		_, s.err = s.w.Write([]byte("data: [DONE]\n\n"))
	}
}

// flush sends what was written; it returns the first error so far.
func (s *sseWriter) flush() error {
	if s.err == nil {
		s.err = s.rc.Flush()
	}
	return s.err
}

// streamSSE writes run's events as they come: each sequence's opening,
// one chunk per text delta, a finish chunk per sequence, the usage chunk
// when asked, and [DONE]. An error after the headers went out becomes an
// error event followed by [DONE]. It returns at once when the client goes
// away or a write fails; the caller's run.stop then aborts the sequences.
func (a *API) streamSSE(w http.ResponseWriter, ctx context.Context, m Model, p *plan, sh shape, run *run, u usage) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := newSSEWriter(w)
	for i := range p.sequences() {
		if o := sh.opening(i); o != nil {
			s.event(o)
		}
	}
	if s.flush() != nil {
		return
	}
	offsets := make([]int, p.sequences())
	for !run.done() {
		e, err := run.next(ctx)
		if err == nil {
			err = sequenceError(ctx, e.ev)
		}
		if err != nil {
			// A client that left gets nothing; a shutdown that cut the
			// stream short is an error the client must see.
			if ctx.Err() != nil && !shutdown.Cancelled(ctx) {
				return
			}
			ae := apiErrorFor(err)
			a.logFailure(ae, err)
			s.event(ae.body())
			s.done()
			s.flush()
			return
		}
		var lp *tokenLogprob
		if p.logprobs && e.ev.Token >= 0 {
			l := makeLogprob(m, e.ev, offsets[e.index])
			lp = &l
		}
		if e.ev.Text != "" || lp != nil {
			s.event(sh.delta(e.index, e.ev.Text, lp))
			offsets[e.index] += len(e.ev.Text)
		}
		if e.ev.Finish != "" {
			s.event(sh.finish(e.index, e.ev.Finish))
			u.CompletionTokens += e.ev.Usage.CompletionTokens
		}
		if s.flush() != nil {
			return
		}
	}
	if p.includeUsage {
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
		s.event(sh.usageChunk(u))
	}
	s.done()
	s.flush()
}
