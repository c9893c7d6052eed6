package chains

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// Endpoint is where a dependency answers: its predict URL and, for
// Baseten's internal gateway, the Host header to send.
type Endpoint struct {
	URL  string
	Host string
}

// maxErrorBody caps how much of an error answer is read.
const maxErrorBody = 16 << 20

// httpTransport calls one dependency over HTTP with Truss Chains' policy:
// a concurrency limit, retries without backoff, a timeout per attempt, the
// forwarded headers and the Chain's API key.
type httpTransport struct {
	name    string
	ep      Endpoint
	apiKey  string
	opts    DepOptions
	client  *http.Client
	sem     *semaphore.Weighted
	log     *slog.Logger
	metrics *depMetrics
}

func newHTTPTransport(name string, ep Endpoint, apiKey string, opts DepOptions, rt http.RoundTripper, log *slog.Logger, m *depMetrics) *httpTransport {
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxConnsPerHost = opts.Concurrency
		t.MaxIdleConnsPerHost = min(opts.Concurrency, 50)
		rt = t
	}
	return &httpTransport{
		name: name, ep: ep, apiKey: apiKey, opts: opts,
		client: &http.Client{Transport: rt},
		sem:    semaphore.NewWeighted(int64(opts.Concurrency)),
		log:    log, metrics: m,
	}
}

func (h *httpTransport) call(ctx context.Context, body []byte, binary bool) (io.ReadCloser, error) {
	h.metrics.queued(h.name, 1)
	err := h.sem.Acquire(ctx, 1)
	h.metrics.queued(h.name, -1)
	if err != nil {
		return nil, err
	}
	h.metrics.ongoing(h.name, 1)
	release := sync.OnceFunc(func() {
		h.sem.Release(1)
		h.metrics.ongoing(h.name, -1)
	})
	var lastErr error
	for attempt := 1; attempt <= h.opts.Retries; attempt++ {
		if attempt > 1 {
			h.log.Warn("Retrying dependency Chainlet", "dependency", h.name, "attempt", attempt, "of", h.opts.Retries, "error", firstLine(lastErr))
		}
		h.metrics.request(h.name)
		rc, err := h.attempt(ctx, body, binary, release)
		if err == nil {
			return rc, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break // the caller is gone; Truss retries only the call's own failures
		}
	}
	release()
	return nil, lastErr
}

func (h *httpTransport) closeIdle() { h.client.CloseIdleConnections() }

// attempt makes one request. On success the returned body cancels the
// attempt's timeout and releases the concurrency slot when closed.
func (h *httpTransport) attempt(ctx context.Context, body []byte, binary bool, release func()) (io.ReadCloser, error) {
	actx, cancel := context.WithTimeoutCause(ctx, h.opts.Timeout, ErrTimeout)
	req, err := http.NewRequestWithContext(actx, http.MethodPost, h.ep.URL, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("chains: dependency %s: %w", h.name, err)
	}
	for k, v := range ForwardedHeaders(ctx) {
		req.Header[k] = v
	}
	if h.ep.Host != "" {
		req.Host = h.ep.Host
	}
	if h.apiKey != "" {
		req.Header.Set("Authorization", "Api-Key "+h.apiKey)
	}
	if binary {
		req.Header.Set("Content-Type", "application/octet-stream")
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		cancel()
		return nil, h.transportError(actx, err)
	}
	if resp.StatusCode >= 400 {
		defer cancel()
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if err != nil {
			return nil, h.transportError(actx, err)
		}
		return nil, parseErrorResponse(h.name, resp.StatusCode, req.Header.Get(HeaderTraceParent), data)
	}
	return &attemptBody{ReadCloser: resp.Body, done: func() { cancel(); release() }, ctx: actx, t: h}, nil
}

func (h *httpTransport) transportError(actx context.Context, err error) error {
	if errors.Is(context.Cause(actx), ErrTimeout) {
		return fmt.Errorf("%w `%s` (%.1f seconds limit)", ErrTimeout, h.name, h.opts.Timeout.Seconds())
	}
	return fmt.Errorf("chains: calling dependency Chainlet `%s`: %w", h.name, err)
}

// attemptBody is a successful answer's body; reading it is bounded by the
// attempt's timeout, and closing it ends the attempt.
type attemptBody struct {
	io.ReadCloser
	once sync.Once
	done func()
	ctx  context.Context
	t    *httpTransport
}

func (b *attemptBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = b.t.transportError(b.ctx, err)
	}
	return n, err
}

func (b *attemptBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// parseErrorResponse turns a dependency's error answer into a *RemoteError
// as Truss's response_raise_errors reads it: a RemoteErrorDetail (strictly
// typed, all four keys required), a plain Truss error string, or neither.
func parseErrorResponse(name string, status int, traceID string, body []byte) *RemoteError {
	e := &RemoteError{Chainlet: name, Status: status, TraceID: traceID}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return e
	}
	raw, ok := top["error"]
	if !ok {
		e.Message = "Could not get `error` field from JSON response."
		return e
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		e.Message = s
		return e
	}
	d, ok := parseDetail(raw)
	if !ok {
		e.Message = "Could not parse chainlet error: " + string(raw)
		return e
	}
	e.Detail = &d
	if i := strings.Index(d.ExceptionMessage, chainedHeader); i >= 0 {
		e.cause = parseChained(d.ExceptionMessage[i:])
	}
	return e
}

func parseDetail(raw json.RawMessage) (RemoteErrorDetail, bool) {
	var keys map[string]json.RawMessage
	if json.Unmarshal(raw, &keys) != nil {
		return RemoteErrorDetail{}, false
	}
	for _, k := range []string{"exception_cls_name", "exception_module_name", "exception_message", "user_stack_trace"} {
		if _, ok := keys[k]; !ok {
			return RemoteErrorDetail{}, false
		}
	}
	var d RemoteErrorDetail
	if json.Unmarshal(raw, &d) != nil || d.UserStackTrace == nil {
		return RemoteErrorDetail{}, false
	}
	return d, true
}

// depMetrics are Truss Chains' dependency gauges and counters, labelled by
// dependency. A nil *depMetrics records nothing.
type depMetrics struct {
	ongoingG *prometheus.GaugeVec
	queuedG  *prometheus.GaugeVec
	total    *prometheus.CounterVec
}

func newDepMetrics(reg prometheus.Registerer) *depMetrics {
	m := &depMetrics{
		ongoingG: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "dependency_chainlet_ongoing_requests", Help: "Calls to a dependency Chainlet in flight."}, []string{"dependency_chainlet"}),
		queuedG:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "dependency_chainlet_queued_requests", Help: "Calls to a dependency Chainlet waiting for its concurrency limit."}, []string{"dependency_chainlet"}),
		total:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dependency_chainlet_requests_total", Help: "HTTP requests sent to a dependency Chainlet, retries included."}, []string{"dependency_chainlet"}),
	}
	m.ongoingG = registerOrReuse(reg, m.ongoingG)
	m.queuedG = registerOrReuse(reg, m.queuedG)
	m.total = registerOrReuse(reg, m.total)
	return m
}

// registerOrReuse registers c, or returns the collector already registered
// under its name (a second Handler on the same registry shares it).
func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func (m *depMetrics) queued(name string, d float64) {
	if m != nil {
		m.queuedG.WithLabelValues(name).Add(d)
	}
}

func (m *depMetrics) ongoing(name string, d float64) {
	if m != nil {
		m.ongoingG.WithLabelValues(name).Add(d)
	}
}

func (m *depMetrics) request(name string) {
	if m != nil {
		m.total.WithLabelValues(name).Inc()
	}
}

// inProcessTransport serves HTTP requests by calling handlers in this
// process, keyed by URL host, so local mode goes through exactly the wire
// path of remote mode (encoding, status codes, errors, streaming) without
// sockets.
type inProcessTransport struct {
	handlers map[string]http.Handler
}

func (t *inProcessTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h, ok := t.handlers[req.URL.Host]
	if !ok {
		return nil, fmt.Errorf("chains: no local Chainlet %q", req.URL.Host)
	}
	pr, pw := io.Pipe()
	w := &pipeWriter{header: make(http.Header), pw: pw, ready: make(chan struct{})}
	go func() {
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				pw.CloseWithError(fmt.Errorf("chains: local Chainlet panicked: %v", p))
			}
			w.WriteHeader(http.StatusOK)
			pw.Close()
		}()
		h.ServeHTTP(w, req)
	}()
	select {
	case <-w.ready:
	case <-req.Context().Done():
		pr.CloseWithError(req.Context().Err())
		return nil, req.Context().Err()
	}
	stop := context.AfterFunc(req.Context(), func() { pr.CloseWithError(req.Context().Err()) })
	return &http.Response{
		Status: http.StatusText(w.status), StatusCode: w.status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.header, Body: &stopBody{ReadCloser: pr, stop: stop}, ContentLength: -1, Request: req,
	}, nil
}

type stopBody struct {
	io.ReadCloser
	stop func() bool
}

func (b *stopBody) Close() error {
	b.stop()
	return b.ReadCloser.Close()
}

// pipeWriter is the in-process ResponseWriter: the header is published
// once, then the body flows through the pipe.
type pipeWriter struct {
	header http.Header
	pw     *io.PipeWriter
	status int
	once   sync.Once
	ready  chan struct{}
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(status int) {
	w.once.Do(func() {
		w.status = status
		w.header = w.header.Clone()
		close(w.ready)
	})
}

func (w *pipeWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(p)
}

// Flush is a no-op: every Write reaches the reader directly.
func (w *pipeWriter) Flush() {}

var _ http.Flusher = (*pipeWriter)(nil)
