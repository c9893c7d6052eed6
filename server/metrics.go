package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserver/modelserver/batching"
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
			Help: "HTTP requests answered, by route, status code (499: the client left) and outcome (ok, invalid_input, too_large, queue_full, queue_timeout, cancelled, deadline, model_error, not_ready, unauthenticated, aborted, error).",
		}, []string{"route", "code", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelserver_http_request_duration_seconds",
			Help:    "Time from request start to the last byte of the answer, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelserver_http_requests_in_flight",
			Help: "Predict requests and WebSocket connections being served now; a stream counts until it ends.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelserver_model_ready",
			Help: "1 when the model is loaded and serving, else 0.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight, m.ready)
	return m
}

// batchObserver exports the batcher's events as Prometheus metrics.
type batchObserver struct {
	queueDepth    prometheus.Gauge
	queueWait     prometheus.Histogram
	dropped       *prometheus.CounterVec
	batchRows     prometheus.Histogram
	batchRequests prometheus.Histogram
	execution     *prometheus.HistogramVec
	resultDropped prometheus.Counter
	log           *slog.Logger
}

// NewBatchObserver returns a batching.Observer that exports queue depth,
// queue wait, batch sizes, execution time and dropped requests to reg, and
// logs once when the model turns out to be unbatchable.
func NewBatchObserver(reg prometheus.Registerer, log *slog.Logger) batching.Observer {
	o := &batchObserver{
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelserver_queue_depth",
			Help: "Requests waiting in the batching queue.",
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "modelserver_queue_wait_seconds",
			Help:    "Time requests spent queued before their execution started.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 2, 20),
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelserver_queue_dropped_total",
			Help: "Requests removed from the queue without running, by reason (cancelled, deadline, queue_timeout, closed).",
		}, []string{"reason"}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "modelserver_batch_rows",
			Help:    "Rows (dimension 0) per model execution.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		batchRequests: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "modelserver_batch_requests",
			Help:    "Requests per model execution.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		execution: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelserver_execution_seconds",
			Help:    "Model execution time per batch, by result (ok, error).",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 20),
		}, []string{"result"}),
		resultDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "modelserver_results_dropped_total",
			Help: "Requests whose client left while their batch executed; the result was discarded.",
		}),
		log: log,
	}
	reg.MustRegister(o.queueDepth, o.queueWait, o.dropped, o.batchRows, o.batchRequests, o.execution, o.resultDropped)
	return o
}

func (o *batchObserver) QueueDepth(n int)                   { o.queueDepth.Set(float64(n)) }
func (o *batchObserver) RequestDequeued(wait time.Duration) { o.queueWait.Observe(wait.Seconds()) }
func (o *batchObserver) ResultDropped()                     { o.resultDropped.Inc() }

func (o *batchObserver) RequestDropped(wait time.Duration, reason error) {
	o.queueWait.Observe(wait.Seconds())
	label := "closed"
	switch {
	case errors.Is(reason, context.Canceled):
		label = "cancelled"
	case errors.Is(reason, context.DeadlineExceeded):
		label = "deadline"
	case errors.Is(reason, batching.ErrQueueTimeout):
		label = "queue_timeout"
	}
	o.dropped.WithLabelValues(label).Inc()
}

func (o *batchObserver) BatchExecuted(rows, requests int, exec time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	o.batchRows.Observe(float64(rows))
	o.batchRequests.Observe(float64(requests))
	o.execution.WithLabelValues(result).Observe(exec.Seconds())
}

func (o *batchObserver) Unbatchable(err error) {
	o.log.Warn("the model mixes rows across a batch; running requests one at a time from now on", "error", err)
}
