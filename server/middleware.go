package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelserver/modelserver/internal/requestid"
	"github.com/modelserver/modelserver/internal/shutdown"
	"github.com/modelserver/modelserver/telemetry"
)

// DefaultOpenRoutes are the routes served without an API key and while the
// server drains: liveness, readiness (Truss's, SageMaker's, the Open
// Inference Protocol's and vLLM's /health) and /metrics.
var DefaultOpenRoutes = []string{
	"GET /{$}",
	"GET /v1/models/{model}",
	"GET /v1/models/{model}/loaded",
	"GET /ping",
	"GET /health",
	"GET /metrics",
	"GET /v2/health/live",
	"GET /v2/health/ready",
}

// CheckRoutePatterns returns an error naming the first pattern that is not
// a valid http.ServeMux pattern, or that conflicts with an earlier one.
func CheckRoutePatterns(patterns []string) (err error) {
	mux := http.NewServeMux()
	for _, p := range patterns {
		func() {
			defer func() {
				if v := recover(); v != nil && err == nil {
					err = fmt.Errorf("route pattern %q: %v", p, v)
				}
			}()
			mux.Handle(p, http.NotFoundHandler())
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// openRouteMatcher tells the open routes from the others.
type openRouteMatcher struct{ mux *http.ServeMux }

// openRoute marks a match in openRouteMatcher's mux.
type openRoute struct{}

func (openRoute) ServeHTTP(http.ResponseWriter, *http.Request) {}

func newOpenRouteMatcher(patterns []string) openRouteMatcher {
	mux := http.NewServeMux()
	for _, p := range patterns {
		mux.Handle(p, openRoute{})
	}
	return openRouteMatcher{mux}
}

// open reports whether r is on an open route. A path the mux would
// redirect (unclean, or missing a trailing slash) is not open.
func (m openRouteMatcher) open(r *http.Request) bool {
	h, _ := m.mux.Handler(r)
	_, ok := h.(openRoute)
	return ok
}

// requestTimer is stored in each request's context by instrument so handlers
// can name the route they served and the error outcome.
type requestTimer struct {
	route   string
	outcome string // "" until an error names one; "ok" for success
	start   time.Time
}

type requestTimerKey struct{}

func setRoute(r *http.Request, route string) {
	if t, ok := r.Context().Value(requestTimerKey{}).(*requestTimer); ok {
		t.route = route
	}
}

func setOutcome(r *http.Request, outcome string) {
	if t, ok := r.Context().Value(requestTimerKey{}).(*requestTimer); ok {
		t.outcome = outcome
	}
}

// statusRecorder remembers the status a handler wrote and whether writing
// the body failed.
type statusRecorder struct {
	http.ResponseWriter
	status    int
	writeFail bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	if err != nil {
		r.writeFail = true
	}
	return n, err
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Hijack lets the WebSocket upgrader take the connection; gorilla/websocket
// asserts http.Hijacker rather than unwrapping.
func (r *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil && r.status == 0 {
		r.status = http.StatusSwitchingProtocols
	}
	return conn, rw, err
}

// quietRoutes are left out of the access log, as Truss does for probes and
// /metrics: route names set by handlers, or mux patterns.
var quietRoutes = map[string]bool{
	"liveness": true, "readiness": true, "loaded": true,
	"GET /metrics": true, "/metrics": true, "GET /health": true,
	"GET /v2/health/live": true, "GET /v2/health/ready": true,
}

// instrument wraps every route: it gives the request its id (echoed in
// X-Request-Id), continues the client's trace in a server span, checks the
// API key, refuses new work while the server drains, binds the request to
// the shutdown stopper, and finally counts, times and logs the request. A
// request whose client left before its answer was written is recorded as
// 499 whatever the handler tried to write; one that leaves after a complete
// answer keeps the answer's status.
func (s *Server) instrument(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		timer := &requestTimer{start: time.Now()}
		id := requestid.Pick(r.Header.Get)
		w.Header().Set(requestid.Header, id)
		if r.Header.Get(requestid.HeaderBaseten) == id {
			w.Header().Set(requestid.HeaderBaseten, id)
		}
		ctx := requestid.NewContext(r.Context(), id)
		ctx = s.propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
		ctx, span := s.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path),
			attribute.String("request_id", id)))
		ctx = context.WithValue(ctx, requestTimerKey{}, timer)
		ctx, stats := telemetry.StartRequest(ctx, s.tracer)
		ctx, release := s.stopper.Bind(ctx)
		defer release()
		r = r.WithContext(ctx)
		rec := &statusRecorder{ResponseWriter: w}

		aborted := true // until next returns: a panic, such as http.ErrAbortHandler, is on its way up
		defer func() {
			status := rec.status
			if clientGone(r.Context()) && (status == 0 || rec.writeFail || timer.outcome == "cancelled") {
				status = StatusClientClosedRequest
			}
			route := timer.route
			if route == "" {
				route = r.Pattern
			}
			if route == "" {
				// Refused before routing (401, draining): label it with the
				// route it asked for.
				_, route = mux.Handler(r)
			}
			if route == "" {
				route = "other"
			}
			outcome := timer.outcome
			switch {
			case aborted:
				outcome = "aborted"
			case status == StatusClientClosedRequest:
				outcome = "cancelled"
			case outcome == "" && status < 400:
				outcome = "ok"
			case outcome == "":
				outcome = "error"
			}
			elapsed := time.Since(timer.start)
			span.SetName(r.Method + " " + route)
			span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", status))
			if status >= 500 || aborted {
				span.SetStatus(codes.Error, outcome)
			}
			span.End()
			if route == "/metrics" || route == "GET /metrics" {
				return
			}
			s.metrics.requests.WithLabelValues(route, strconv.Itoa(status), outcome).Inc()
			s.metrics.duration.WithLabelValues(route).Observe(elapsed.Seconds())
			if quietRoutes[route] && status < 400 {
				return
			}
			attrs := append([]slog.Attr{
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("route", route),
				slog.String("model", s.opts.ModelName), slog.Int("status", status), slog.String("outcome", outcome),
				slog.Duration("duration", elapsed), slog.Int64("request_bytes", r.ContentLength),
			}, stats.LogAttrs()...)
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "Handled request", attrs...)
		}()

		var err error
		if !s.open.open(r) {
			if s.keys.Enabled() {
				err = s.keys.Check(r.Header.Get("Authorization"))
			}
			if err == nil && s.closing.Load() {
				err = errShuttingDown
			}
		}
		switch {
		case err != nil:
			s.writeError(rec, r, err)
		case s.open.open(r):
			mux.ServeHTTP(rec, r)
		default:
			s.active.begin()
			defer s.active.end()
			mux.ServeHTTP(rec, r)
		}
		aborted = false
	})
}

// clientGone reports whether ctx ended because the client left, rather than
// because the grace period of a shutdown ran out.
func clientGone(ctx context.Context) bool {
	return ctx.Err() != nil && !errors.Is(context.Cause(ctx), shutdown.ErrShuttingDown)
}
