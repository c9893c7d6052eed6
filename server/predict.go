package server

import (
	"context"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/modelserver/modelserver/codec"
	"github.com/modelserver/modelserver/internal/httpbody"
	"github.com/modelserver/modelserver/tensor"
)

func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request) {
	setRoute(r, "predict")
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()
	m, err := s.readyModel()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if m.Handler != nil {
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes)
		m.Handler.ServeHTTP(w, r)
		return
	}
	body, err := httpbody.Read(w, r, s.opts.MaxRequestBytes)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	inputs, format, err := m.decode(body, isBinary(r.Header.Get("Content-Type")))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := s.withPredictTimeout(r.Context())
	defer cancel()
	if m.Streamer != nil {
		s.serveStream(w, r, ctx, m, inputs, format)
		return
	}
	outputs, err := m.Predictor.Predict(ctx, inputs)
	if err != nil {
		if r.Context().Err() != nil {
			// The client left, or the shutdown grace ran out; a deadline
			// that fired too is moot.
			err = context.Cause(r.Context())
		}
		s.writeError(w, r, err)
		return
	}
	payload, err := codec.EncodeTensors(outputs, m.outputNames, format)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", format.ContentType())
	w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
	w.WriteHeader(http.StatusOK)
	w.Write(payload)
}

// decode turns a request body, which the server owns, into the model's
// validated inputs, and says which format the answer must use.
func (m *loadedModel) decode(body []byte, binary bool) (map[string]tensor.Tensor, codec.Format, error) {
	inputs, format, err := codec.DecodeTensorsInPlace(body, binary, m.dtypeOf)
	if err != nil {
		return nil, format, err
	}
	return inputs, format, m.Signature.Check(inputs)
}

// withPredictTimeout bounds queueing plus execution of one request by
// Options.PredictTimeout, when one is set.
func (s *Server) withPredictTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.opts.PredictTimeout > 0 {
		return context.WithTimeout(ctx, s.opts.PredictTimeout)
	}
	return ctx, func() {}
}

func (m *loadedModel) dtypeOf(name string) (tensor.DType, bool) {
	d, ok := m.dtypes[name]
	return d, ok
}

// isBinary reports whether a Content-Type selects msgpack: the media type,
// case-insensitive and without parameters, is application/octet-stream.
// Anything else, including no Content-Type, is JSON (truss-wire.md §2).
func isBinary(contentType string) bool {
	media, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		media = strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0]))
	}
	return media == "application/octet-stream"
}
