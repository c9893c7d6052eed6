package server

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the transport's Prometheus collectors. Names are documented in
// README.md.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	ready    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelserver_http_requests_total",
			Help: "HTTP requests answered, by route and status code (499: the client left).",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelserver_http_request_duration_seconds",
			Help:    "Time from request start to the last byte of the answer, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelserver_http_requests_in_flight",
			Help: "Inference requests being served now.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelserver_model_ready",
			Help: "1 when the model is loaded and serving, else 0.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight, m.ready)
	return m
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
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
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// quietRoutes are left out of the access log, as Truss does for probes.
var quietRoutes = map[string]bool{"liveness": true, "readiness": true, "loaded": true, "": true}

// accessLog counts, times and logs every request. A request whose client
// left is recorded as 499 whatever the handler tried to write.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		timer := &requestTimer{start: time.Now()}
		r = r.WithContext(contextWithTimer(r, timer))
		rec := &statusRecorder{ResponseWriter: w}
		if r.URL.Path != "/metrics" {
			s.metrics.inFlight.Inc()
			defer s.metrics.inFlight.Dec()
		}
		next.ServeHTTP(rec, r)
		if r.URL.Path == "/metrics" {
			return
		}
		status := rec.status
		if r.Context().Err() != nil {
			status = StatusClientClosedRequest
		}
		elapsed := time.Since(timer.start)
		route := timer.route
		if route == "" {
			route = "other"
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		s.metrics.duration.WithLabelValues(route).Observe(elapsed.Seconds())
		if !quietRoutes[timer.route] || status >= 400 {
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "Handled request",
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", status), slog.Duration("duration", elapsed),
				slog.Int64("request_bytes", r.ContentLength))
		}
	})
}
