package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure an API. Zero fields take the documented defaults.
type Options struct {
	// Registerer receives the LLM metrics. Default: a private registry
	// (metrics kept but not exported).
	Registerer prometheus.Registerer
	// Logger receives request failures. Default slog.Default().
	Logger *slog.Logger
	// MaxRequestBytes caps a request body; larger ones get 413. Default
	// 100 MiB, Truss's limit.
	MaxRequestBytes int64
	// MaxSequencesPerRequest caps the sequences one request may start (n
	// times the number of completion prompts). Default 64.
	MaxSequencesPerRequest int
	// WebSocketMaxMessageBytes caps one WebSocket message. Default 100 MiB.
	WebSocketMaxMessageBytes int64
	// WebSocketPingInterval is the keep-alive ping period; a peer silent
	// for two periods is dropped. Default 20 s.
	WebSocketPingInterval time.Duration
}

// Defaults of Options.
const (
	DefaultMaxRequestBytes          = 100 << 20
	DefaultMaxSequencesPerRequest   = 64
	DefaultWebSocketMaxMessageBytes = 100 << 20
	DefaultWebSocketPingInterval    = 20 * time.Second
)

// API serves one language model. Create it with New; it answers 503 until
// SetModel.
type API struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	model   atomic.Pointer[servedModel]

	// WebSocket connections are hijacked, so http.Server.Shutdown does not
	// wait for them; Shutdown does.
	draining  chan struct{} // closed by Drain
	drainOnce sync.Once
	socketsMu sync.Mutex    // guards the following
	sockets   int           // WebSocket connections being served
	socketEnd chan struct{} // closed and replaced whenever one ends
}

type servedModel struct {
	Model
	created int64 // Unix seconds when it was set, for /v1/models
}

// New returns an API with no model yet.
func New(opts Options) *API {
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.MaxSequencesPerRequest <= 0 {
		opts.MaxSequencesPerRequest = DefaultMaxSequencesPerRequest
	}
	if opts.WebSocketMaxMessageBytes <= 0 {
		opts.WebSocketMaxMessageBytes = DefaultWebSocketMaxMessageBytes
	}
	if opts.WebSocketPingInterval <= 0 {
		opts.WebSocketPingInterval = DefaultWebSocketPingInterval
	}
	a := &API{opts: opts, log: opts.Logger, draining: make(chan struct{}), socketEnd: make(chan struct{})}
	a.metrics = newMetrics(opts.Registerer, a.stats)
	return a
}

// SetModel publishes the loaded model; from now on every route serves it.
func (a *API) SetModel(m Model) {
	a.model.Store(&servedModel{Model: m, created: time.Now().Unix()})
}

// Drain asks every WebSocket connection to close with 1001 (going away)
// once its current answer is sent, and refuses new ones with 503. It is
// idempotent.
func (a *API) Drain() {
	a.drainOnce.Do(func() {
		a.socketsMu.Lock()
		close(a.draining)
		a.socketsMu.Unlock()
	})
}

// Shutdown calls Drain and waits for the WebSocket connections to close.
// When ctx ends first it returns ctx's error; the connections left end
// when their requests' contexts do (server.Server.Cancel), an answer in
// flight with an error frame and the connection with 1001.
func (a *API) Shutdown(ctx context.Context) error {
	a.Drain()
	for {
		a.socketsMu.Lock()
		n, ended := a.sockets, a.socketEnd
		a.socketsMu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ended:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// trackSocket counts a WebSocket connection for Shutdown; it returns false
// once the API drains. A true return must be paired with untrackSocket.
func (a *API) trackSocket() bool {
	a.socketsMu.Lock()
	defer a.socketsMu.Unlock()
	select {
	case <-a.draining:
		return false
	default:
		a.sockets++
		return true
	}
}

func (a *API) untrackSocket() {
	a.socketsMu.Lock()
	defer a.socketsMu.Unlock()
	a.sockets--
	close(a.socketEnd)
	a.socketEnd = make(chan struct{})
}

// Routes are the OpenAI, vLLM and health routes as ServeMux patterns, for
// server.Options.Routes.
func (a *API) Routes() map[string]http.Handler {
	return map[string]http.Handler{
		"POST /v1/chat/completions": http.HandlerFunc(a.handleChat),
		"POST /v1/completions":      http.HandlerFunc(a.handleCompletions),
		"GET /v1/models":            http.HandlerFunc(a.handleModels),
		"GET /health":               http.HandlerFunc(a.handleHealth),
		"POST /tokenize":            http.HandlerFunc(a.handleTokenize),
		"POST /detokenize":          http.HandlerFunc(a.handleDetokenize),
	}
}

func (a *API) readyModel() (*servedModel, error) {
	m := a.model.Load()
	if m == nil {
		return nil, ErrNotReady
	}
	return m, nil
}

func (a *API) stats() (running, waiting, slotsUsed, slots int) {
	m := a.model.Load()
	if m == nil {
		return 0, 0, 0, 0
	}
	s := m.Stats()
	return s.Running, s.Waiting, s.SlotsUsed, s.Slots
}

// readBody reads the whole body under the size limit. A client that leaves
// while sending it gets context.Canceled.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.MaxRequestBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if !errors.As(err, &tooLarge) && r.Context().Err() != nil {
			return nil, context.Canceled
		}
		return nil, err
	}
	return body, nil
}

// readRequest starts every OpenAI POST handler: the served model, then the
// body under the size limit decoded as JSON into a new T. When it returns
// false it has already answered with the error.
func readRequest[T any](a *API, w http.ResponseWriter, r *http.Request) (*servedModel, *T, bool) {
	m, err := a.readyModel()
	if err != nil {
		a.writeError(w, err)
		return nil, nil, false
	}
	body, err := a.readBody(w, r)
	if err != nil {
		a.writeError(w, err)
		return nil, nil, false
	}
	req := new(T)
	if err := decodeJSON(body, req); err != nil {
		a.writeError(w, err)
		return nil, nil, false
	}
	return m, req, true
}

// writeError answers with OpenAI's error object.
func (a *API) writeError(w http.ResponseWriter, err error) {
	e := apiErrorFor(err)
	a.logFailure(e, err)
	writeJSON(w, e.Status, e.body())
}

func (a *API) logFailure(e apiError, err error) {
	if e.Status >= 500 && e.Status != http.StatusServiceUnavailable {
		a.log.Error("LLM request failed", "status", e.Status, "error", err)
	}
}

// marshalJSON encodes v without escaping <, > and &, which chat templates'
// tokens are full of; OpenAI's servers do not escape them either.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := marshalJSON(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"message":"Internal error: the answer could not be encoded.","type":"server_error","param":null,"code":"internal_error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

func (a *API) handleHealth(w http.ResponseWriter, _ *http.Request) {
	if _, err := a.readyModel(); err != nil {
		a.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

type modelList struct {
	Object string      `json:"object"`
	Data   []modelCard `json:"data"`
}

type modelCard struct {
	ID          string `json:"id"`
	Object      string `json:"object"`
	Created     int64  `json:"created"`
	OwnedBy     string `json:"owned_by"`
	MaxModelLen int    `json:"max_model_len"`
}

func (a *API) handleModels(w http.ResponseWriter, _ *http.Request) {
	m, err := a.readyModel()
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, modelList{Object: "list", Data: []modelCard{{
		ID: m.Name(), Object: "model", Created: m.created, OwnedBy: "modelserver", MaxModelLen: m.ContextLength(),
	}}})
}
