// Package server is the HTTP transport: Truss-compatible routes
// (truss-wire.md §1), content negotiation, the error mapping and /metrics.
//
// Contract:
//   - A Server answers from the moment it is created; until SetReady is
//     called readiness and predict answer 503, so a slow model load never
//     blocks liveness.
//   - Handlers depend only on the small Predictor interface; the model's
//     execution policy (batching, concurrency) lives behind it.
//   - Request bodies are read whole, up to Options.MaxRequestBytes, and the
//     decoded tensors may alias the body until the response is written.
//   - Every route passes through one middleware (instrument): request id
//     (X-Request-Id), trace context, API keys (Options.APIKeys; every route
//     but Options.OpenRoutes needs one), refusal of new work while draining,
//     then metrics and the access log. Options.Routes and Model.Handler get
//     the same treatment.
//   - Shutdown: SetClosing turns readiness and every route but the open
//     ones to 503 at once; Shutdown waits for WebSocket connections, each
//     closed with 1001 after its current message, and when its context ends
//     cancels what is left, HTTP requests included, with
//     shutdown.ErrShuttingDown, which they answer as 503 (1001 on a
//     WebSocket). http.Server.Shutdown waits for the plain HTTP requests.
//   - All methods are safe for concurrent use.
package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/auth"
	"github.com/modelserver/modelserver/internal/shutdown"
	"github.com/modelserver/modelserver/telemetry"
	"github.com/modelserver/modelserver/tensor"
)

// Predictor runs a validated request. Implementations decide batching and
// concurrency; they must return ctx's error when ctx ends first.
type Predictor interface {
	Predict(ctx context.Context, inputs map[string]tensor.Tensor) (map[string]tensor.Tensor, error)
}

// Model is what the server needs of a loaded model: a Predictor for models
// that answer once, a Streamer for models that answer in chunks, or a Handler
// for models whose requests are not tensors (LLMs, Chainlets).
type Model struct {
	Signature engine.Signature
	Predictor Predictor
	Streamer  Streamer
	// Handler, when set, serves predict requests itself: it reads the body
	// (capped at Options.MaxRequestBytes) and writes the whole answer. The
	// server still owns routing, readiness, the access log and metrics.
	Handler http.Handler
}

// Options configure a Server. Zero fields take the documented defaults.
type Options struct {
	// MaxRequestBytes caps a request body; larger ones get 413. Default 100 MiB.
	MaxRequestBytes int64
	// PredictTimeout bounds queueing plus execution of one predict; past it
	// the request gets 504. 0 means no limit.
	PredictTimeout time.Duration
	// StreamingReadTimeout is the longest gap allowed between two chunks of
	// a streamed answer; a stalled stream is aborted. Default 60 s.
	StreamingReadTimeout time.Duration
	// WebSocketMaxMessageBytes caps one WebSocket message; a larger one
	// closes the connection with 1009. Default 100 MiB.
	WebSocketMaxMessageBytes int64
	// WebSocketPingInterval is the keep-alive ping period; a peer silent
	// for two periods is dropped. Default 20 s.
	WebSocketPingInterval time.Duration
	// Logger receives the access log and errors; its lines carry
	// request_id, trace_id and span_id (telemetry.NewLogHandler). Default
	// slog.Default().
	Logger *slog.Logger
	// ModelName is the access log's model field.
	ModelName string
	// APIKeys, when enabled, are required on every route except
	// OpenRoutes: a request without an accepted key gets 401.
	APIKeys *auth.Keys
	// OpenRoutes are the ServeMux patterns (see CheckRoutePatterns) served
	// without an API key and while the server drains. nil means
	// DefaultOpenRoutes; an empty slice protects every route.
	OpenRoutes []string
	// TracerProvider creates the request, queue, execution and stream
	// spans. Default otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// Propagator reads the client's trace context from the headers.
	// Default telemetry.Propagator() (W3C traceparent, tracestate, baggage).
	Propagator propagation.TextMapPropagator
	// Registerer receives the server's metrics; Gatherer serves /metrics.
	// Default: a fresh registry used for both.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Routes are extra handlers (ServeMux patterns) served behind the same
	// middleware (API keys, request id, tracing, access log, metrics), such
	// as an LLM's OpenAI-compatible API.
	Routes map[string]http.Handler
}

// Defaults of Options.
const (
	// DefaultMaxRequestBytes is Truss's body limit, 100 MiB.
	DefaultMaxRequestBytes = 100 << 20
	// DefaultStreamingReadTimeout is Truss's runtime.streaming_read_timeout.
	DefaultStreamingReadTimeout = 60 * time.Second
)

// Server serves one model over HTTP.
type Server struct {
	opts       Options
	log        *slog.Logger
	metrics    *metrics
	model      atomic.Pointer[loadedModel]
	closing    atomic.Bool
	handler    http.Handler
	keys       *auth.Keys
	open       openRouteMatcher
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	stopper    *shutdown.Stopper
	sockets    *socketTracker
	active     requestTracker
}

type loadedModel struct {
	Model
	outputNames []string
	dtypes      map[string]tensor.DType
	schema      []byte
}

// New returns a server whose model is not ready yet.
func New(opts Options) *Server {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.StreamingReadTimeout <= 0 {
		opts.StreamingReadTimeout = DefaultStreamingReadTimeout
	}
	if opts.WebSocketMaxMessageBytes <= 0 {
		opts.WebSocketMaxMessageBytes = DefaultWebSocketMaxMessageBytes
	}
	if opts.WebSocketPingInterval <= 0 {
		opts.WebSocketPingInterval = DefaultWebSocketPingInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil || opts.Gatherer == nil {
		reg := prometheus.NewRegistry()
		opts.Registerer, opts.Gatherer = reg, reg
	}
	if opts.OpenRoutes == nil {
		opts.OpenRoutes = DefaultOpenRoutes
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = otel.GetTracerProvider()
	}
	if opts.Propagator == nil {
		opts.Propagator = telemetry.Propagator()
	}
	s := &Server{
		opts:       opts,
		log:        telemetry.Logger(opts.Logger),
		metrics:    newMetrics(opts.Registerer),
		keys:       opts.APIKeys,
		open:       newOpenRouteMatcher(opts.OpenRoutes),
		tracer:     opts.TracerProvider.Tracer(telemetry.TracerName),
		propagator: opts.Propagator,
		stopper:    shutdown.NewStopper(),
		sockets:    newSocketTracker(),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.routeRoot)
	mux.HandleFunc("/v1/models/", s.routeModels)
	mux.HandleFunc("/v1/websocket", s.handleWebSocket)
	mux.HandleFunc("/ping", s.only(http.MethodGet, "readiness", s.handleReadiness))
	mux.HandleFunc("/invocations", s.only(http.MethodPost, "predict", s.handlePredict))
	mux.Handle("/metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	for pattern, h := range opts.Routes {
		mux.Handle(pattern, h)
	}
	s.handler = s.instrument(mux)
	return s
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// SetReady publishes a loaded model; from now on readiness answers {} and
// predict runs.
func (s *Server) SetReady(m Model) {
	lm := &loadedModel{Model: m, dtypes: make(map[string]tensor.DType)}
	for _, in := range m.Signature.Inputs {
		lm.dtypes[in.Name] = in.DType
	}
	for _, out := range m.Signature.Outputs {
		lm.outputNames = append(lm.outputNames, out.Name)
	}
	lm.schema = schemaJSON(m.Signature, m.Streamer != nil)
	s.model.Store(lm)
	s.metrics.ready.Set(1)
}

// SetClosing makes readiness and new requests (all but the open routes)
// answer 503 while requests in flight finish, so a load balancer stops
// sending before shutdown, and asks WebSocket connections to close with
// 1001 once their current message is answered. It is idempotent.
func (s *Server) SetClosing() {
	s.closing.Store(true)
	s.metrics.ready.Set(0)
	s.sockets.drain()
}

// Shutdown calls SetClosing and waits for the WebSocket connections to
// close. When ctx ends first it calls Cancel, gives the connections
// CancelGrace to send their close frame, closes those left and returns
// ctx's error. Plain HTTP requests are the http.Server's to wait for
// (http.Server.Shutdown); Cancel ends them too.
func (s *Server) Shutdown(ctx context.Context) error {
	s.SetClosing()
	if s.sockets.wait(ctx) {
		return nil
	}
	s.Cancel()
	cancelCtx, cancel := context.WithTimeout(context.Background(), CancelGrace)
	defer cancel()
	if !s.sockets.wait(cancelCtx) {
		s.sockets.closeAll()
		s.sockets.wait(context.Background())
	}
	return ctx.Err()
}

// Cancel ends every request and WebSocket connection in flight, and any
// that starts later, with shutdown.ErrShuttingDown: HTTP requests answer
// 503 (a stream already started is cut off), WebSockets close with 1001.
func (s *Server) Cancel() {
	s.SetClosing()
	s.stopper.Stop()
}

// WaitIdle returns true once no request is in flight outside the open
// routes (streams and WebSockets until they end), false if ctx ends first.
// A shutdown calls it after SetClosing and before closing the listener, so
// requests that keep arriving meanwhile get 503 instead of a refused
// connection.
func (s *Server) WaitIdle(ctx context.Context) bool { return s.active.wait(ctx) }

// CancelGrace is how long requests get to answer after Cancel before their
// connections are closed.
const CancelGrace = 2 * time.Second

func (s *Server) readyModel() (*loadedModel, error) {
	if s.closing.Load() {
		return nil, errShuttingDown
	}
	m := s.model.Load()
	if m == nil {
		return nil, errNotReady
	}
	return m, nil
}

func (s *Server) routeRoot(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		writeDetail(w, http.StatusNotFound, "Not Found")
		return
	}
	s.only(http.MethodGet, "liveness", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, []byte("true"))
	})(w, r)
}

// routeModels serves /v1/models/{name}[/loaded|/schema|:predict|:predict_binary].
// The model name is ignored, as Truss does, and a GET of a :predict URL
// answers like readiness because Truss clients poll it that way.
func (s *Server) routeModels(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/v1/models/")
	switch {
	case rest == "":
		writeDetail(w, http.StatusNotFound, "Not Found")
	case strings.HasSuffix(rest, "/loaded") && !strings.Contains(strings.TrimSuffix(rest, "/loaded"), "/"):
		s.only(http.MethodGet, "loaded", s.handleReadiness)(w, r)
	case strings.HasSuffix(rest, "/schema") && !strings.Contains(strings.TrimSuffix(rest, "/schema"), "/"):
		s.only(http.MethodGet, "schema", s.handleSchema)(w, r)
	case strings.Contains(rest, "/"):
		writeDetail(w, http.StatusNotFound, "Not Found")
	case r.Method == http.MethodPost && (strings.HasSuffix(rest, ":predict") || strings.HasSuffix(rest, ":predict_binary")):
		s.handlePredict(w, r)
	default:
		s.only(http.MethodGet, "readiness", s.handleReadiness)(w, r)
	}
}

// only restricts a handler to one method, answering 405 like FastAPI.
func (s *Server) only(method, route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			writeDetail(w, http.StatusMethodNotAllowed, "Method Not Allowed")
			return
		}
		setRoute(r, route)
		h(w, r)
	}
}

func (s *Server) handleReadiness(w http.ResponseWriter, r *http.Request) {
	if _, err := s.readyModel(); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, []byte("{}"))
}

func (s *Server) handleSchema(w http.ResponseWriter, r *http.Request) {
	m, err := s.readyModel()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m.schema)
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := httpError(err, s.opts.MaxRequestBytes)
	setOutcome(r, e.outcome)
	if e.status >= 500 && e.status != http.StatusServiceUnavailable {
		s.log.ErrorContext(r.Context(), "request failed", "status", e.status, "error", err)
	}
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="modelserver"`)
	}
	body := mustJSON(map[string]string{"error": e.message})
	w.Header().Set(headerErrorSource, errorSourceServer)
	w.Header().Set(headerErrorCode, e.code)
	writeJSON(w, e.status, body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// writeDetail answers like FastAPI's defaults: {"detail": ...} with no Truss
// error headers.
func writeDetail(w http.ResponseWriter, status int, detail string) {
	body, _ := json.Marshal(map[string]string{"detail": detail})
	writeJSON(w, status, body)
}

// mustJSON marshals values that cannot fail to marshal (maps of strings).
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
