package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/codes"

	"github.com/modelserver/modelserver/codec"
	"github.com/modelserver/modelserver/telemetry"
	"github.com/modelserver/modelserver/tensor"
)

// Streamer runs a request whose answer is a sequence of chunks; see
// engine.StreamingModel for the emit contract.
type Streamer interface {
	Stream(ctx context.Context, inputs map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) error
}

// errStreamStalled ends a stream whose producer let more than the streaming
// read timeout pass between two chunks.
var errStreamStalled = errors.New("stream stalled: no chunk within the streaming read timeout")

// streamMode is how a streamed answer is framed on HTTP.
type streamMode int

const (
	// streamChunked is Truss's default: a chunked application/octet-stream
	// body, one encoded chunk per write (msgpack values back to back, or
	// one JSON object per line).
	streamChunked streamMode = iota
	// streamSSE frames each chunk as a Server-Sent Event; chosen by
	// Accept: text/event-stream.
	streamSSE
	// streamGathered answers once with the list of all chunks: Truss's
	// quirk for Accept: application/json from a non-OpenAI client.
	streamGathered
)

func chooseStreamMode(r *http.Request) streamMode {
	accept := r.Header.Get("Accept")
	switch {
	case strings.Contains(strings.ToLower(accept), "text/event-stream"):
		return streamSSE
	case accept == "application/json" && !strings.Contains(strings.ToLower(r.UserAgent()), "openai"):
		return streamGathered
	}
	return streamChunked
}

// streamChunk is one message from a producer to the writing goroutine.
type streamChunk struct {
	outputs map[string]tensor.Tensor
}

// serveStream runs the producer in its own goroutine and writes its chunks
// from this one, the only goroutine that writes the response. A client that
// disconnects cancels ctx, which makes the producer's next emit fail, so it
// stops before computing another step.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, ctx context.Context, m *loadedModel, inputs map[string]tensor.Tensor, format codec.Format) {
	ctx, span := s.tracer.Start(ctx, telemetry.SpanStream)
	defer span.End()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	chunks := make(chan streamChunk)
	done := make(chan error, 1)
	go func() {
		done <- m.Streamer.Stream(ctx, inputs, func(out map[string]tensor.Tensor) error {
			select {
			case chunks <- streamChunk{out}:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
	}()

	mode := chooseStreamMode(r)
	var gathered [][]byte
	started := false
	timer := time.NewTimer(s.opts.StreamingReadTimeout)
	defer timer.Stop()
	for {
		var chunk streamChunk
		select {
		case chunk = <-chunks:
		case err := <-done:
			if err != nil && r.Context().Err() != nil {
				err = context.Cause(r.Context()) // the client left, or the grace period ran out
			}
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			s.finishStream(w, r, started, mode, gathered, format, err)
			return
		case <-timer.C:
			cancel(errStreamStalled)
			<-done
			s.log.ErrorContext(r.Context(), "Exception while generating streamed response", "error", errStreamStalled)
			if !started && mode != streamGathered {
				s.writeError(w, r, errStreamStalled)
				return
			}
			// The 200 is out: abort the connection so the client sees a
			// truncated stream, as Truss does.
			panic(http.ErrAbortHandler)
		}
		timer.Reset(s.opts.StreamingReadTimeout)
		payload, err := s.encodeChunk(chunk.outputs, m, format, mode)
		if err != nil {
			cancel(err)
			<-done
			s.finishStream(w, r, started, mode, gathered, format, err)
			return
		}
		if mode == streamGathered {
			gathered = append(gathered, payload)
			continue
		}
		if !started {
			started = true
			ct := "application/octet-stream"
			if mode == streamSSE {
				ct = "text/event-stream"
				w.Header().Set("Cache-Control", "no-cache")
			}
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(http.StatusOK)
		}
		if _, err := w.Write(payload); err != nil {
			cancel(err)
			<-done
			return
		}
		http.NewResponseController(w).Flush()
	}
}

// encodeChunk frames one chunk. JSON chunks end with a newline so a
// chunked JSON stream is newline-delimited JSON.
func (s *Server) encodeChunk(out map[string]tensor.Tensor, m *loadedModel, format codec.Format, mode streamMode) ([]byte, error) {
	if mode == streamSSE && format == codec.FormatMsgpack {
		format = codec.FormatJSONLists // SSE is text
	}
	payload, err := codec.EncodeTensors(out, m.outputNames, format)
	if err != nil {
		return nil, err
	}
	switch {
	case mode == streamSSE:
		return fmt.Appendf(nil, "data: %s\n\n", payload), nil
	case format != codec.FormatMsgpack && mode == streamChunked:
		return append(payload, '\n'), nil
	}
	return payload, nil
}

// finishStream ends a stream whose producer returned err (nil when done).
// An error before the first chunk is an ordinary error answer; after it, SSE
// gets an error event and the chunked body simply ends, as in Truss.
func (s *Server) finishStream(w http.ResponseWriter, r *http.Request, started bool, mode streamMode, gathered [][]byte, format codec.Format, err error) {
	if err != nil && !errors.Is(err, errShuttingDown) {
		s.log.ErrorContext(r.Context(), "Exception while generating streamed response", "error", err)
	}
	if started && clientGone(r.Context()) {
		setOutcome(r, "cancelled") // the 200 is out, but the client did not get the whole stream
	}
	switch {
	case started && errors.Is(err, errShuttingDown):
		// Cut the stream off so that the client sees an error rather than
		// a complete answer.
		panic(http.ErrAbortHandler)
	case mode == streamGathered && err == nil:
		s.writeGathered(w, gathered, format)
	case !started && err != nil:
		s.writeError(w, r, err)
	case !started:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
	case mode == streamSSE && err != nil:
		e := httpError(err, s.opts.MaxRequestBytes)
		fmt.Fprintf(w, "event: error\ndata: %s\n\n", mustJSON(map[string]string{"error": e.message}))
	}
}

// writeGathered answers with every chunk in one body: a JSON array of the
// chunk objects, or a msgpack array of the chunk maps.
func (s *Server) writeGathered(w http.ResponseWriter, chunks [][]byte, format codec.Format) {
	var body []byte
	if format == codec.FormatMsgpack {
		body = codec.JoinMsgpackArray(chunks)
	} else {
		body = append(body, '[')
		for i, c := range chunks {
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, c...)
		}
		body = append(body, ']')
	}
	w.Header().Set("Content-Type", format.ContentType())
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}
