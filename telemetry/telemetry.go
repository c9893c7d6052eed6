// Package telemetry is the request-scoped observability shared by the
// transports: the slog handler that stamps each log line with the request's
// id and trace, the per-request record of queue time and batch size that the
// access logs print, the queue and execution spans, and the OpenTelemetry
// tracer provider that exports them when OTEL_* variables ask for it.
//
// Contract:
//   - Nothing here reads flags; NewTracerProvider's exporter reads the
//     standard OTEL_* variables itself (autoexport), and
//     ExportConfigured decides from values the command passes in.
//   - Spans for queue wait and execution are recorded after the fact, with
//     the batcher's timestamps, from batching.RequestTracer events, so the
//     batching package needs no tracing code.
//   - All functions and methods are safe for concurrent use.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/internal/requestid"
)

// TracerName names the tracer the transports create spans with.
const TracerName = "github.com/modelserver/modelserver"

// Span names the transports and this package use.
const (
	SpanQueue     = "queue"
	SpanExecute   = "execute"
	SpanStream    = "stream"
	SpanWebSocket = "websocket message"
)

// Propagator is W3C trace context plus baggage: traceparent, tracestate and
// baggage, the propagators Truss reads.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// ExportConfigured reports whether the OTEL_* environment asks for span
// export: OTEL_TRACES_EXPORTER is set to something other than "none", or an
// OTLP endpoint is, and OTEL_SDK_DISABLED is not "true". getenv is
// os.Getenv in the command.
func ExportConfigured(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	if exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp != "" {
		return exp != "none"
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewTracerProvider returns a tracer provider that batches spans to the
// exporter OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_* describe (OTLP
// over HTTP by default), with a resource from OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES, else service.name serviceName. Shut it down to
// flush the last spans.
func NewTracerProvider(ctx context.Context, serviceName string) (*sdktrace.TracerProvider, error) {
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry exporter: %w", err)
	}
	res, err := resource.Merge(resource.NewSchemaless(attribute.String("service.name", serviceName)), resource.Environment())
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// Request is the record of one request: the batcher reports to it (it is a
// batching.RequestTracer), and the access log reads it when the request
// ends. A WebSocket connection or gRPC stream is one Request; its figures
// are those of its last predict.
type Request struct {
	tracer        trace.Tracer
	queueWait     atomic.Int64 // nanoseconds; -1 until known
	batchRows     atomic.Int64 // -1 until known
	batchRequests atomic.Int64
}

var _ batching.RequestTracer = (*Request)(nil)

// StartRequest returns ctx carrying a new Request, which also records the
// queue and execution spans of the predicts made under ctx, with tracer.
func StartRequest(ctx context.Context, tracer trace.Tracer) (context.Context, *Request) {
	r := &Request{tracer: tracer}
	r.queueWait.Store(-1)
	r.batchRows.Store(-1)
	return batching.WithRequestTracer(context.WithValue(ctx, requestKey{}, r), r), r
}

type requestKey struct{}

// RequestFrom returns the Request ctx carries, or nil.
func RequestFrom(ctx context.Context) *Request {
	r, _ := ctx.Value(requestKey{}).(*Request)
	return r
}

// LeftQueue implements batching.RequestTracer: it records the queue time
// and a queue span.
func (r *Request) LeftQueue(ctx context.Context, enqueued, left time.Time, err error) {
	r.queueWait.Store(int64(left.Sub(enqueued)))
	_, span := r.tracer.Start(ctx, SpanQueue, trace.WithTimestamp(enqueued))
	endSpan(span, left, err)
}

// Executed implements batching.RequestTracer: it records the batch size
// and an execution span.
func (r *Request) Executed(ctx context.Context, start, end time.Time, rows, requests int, err error) {
	r.batchRows.Store(int64(rows))
	r.batchRequests.Store(int64(requests))
	_, span := r.tracer.Start(ctx, SpanExecute, trace.WithTimestamp(start), trace.WithAttributes(
		attribute.Int("batch.rows", rows), attribute.Int("batch.requests", requests)))
	endSpan(span, end, err)
}

func endSpan(span trace.Span, end time.Time, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End(trace.WithTimestamp(end))
}

// LogAttrs returns what the access log prints of r: queue_time, and
// batch_size (rows) and batch_requests, each once known. nil r gives none.
func (r *Request) LogAttrs() []slog.Attr {
	if r == nil {
		return nil
	}
	var attrs []slog.Attr
	if w := r.queueWait.Load(); w >= 0 {
		attrs = append(attrs, slog.Duration("queue_time", time.Duration(w)))
	}
	if rows := r.batchRows.Load(); rows >= 0 {
		attrs = append(attrs, slog.Int64("batch_size", rows), slog.Int64("batch_requests", r.batchRequests.Load()))
	}
	return attrs
}

// NewLogHandler wraps h so that every record logged with a context names
// the context's request (request_id) and trace (trace_id, and span_id when
// spans are recorded). A handler it already wrapped is returned as is.
func NewLogHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(logHandler); ok {
		return h
	}
	return logHandler{h}
}

// Logger returns log with its handler wrapped by NewLogHandler.
func Logger(log *slog.Logger) *slog.Logger {
	if _, ok := log.Handler().(logHandler); ok {
		return log
	}
	return slog.New(NewLogHandler(log.Handler()))
}

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, rec slog.Record) error {
	id := requestid.FromContext(ctx)
	span := trace.SpanFromContext(ctx)
	sc := span.SpanContext()
	if id != "" || sc.IsValid() {
		rec = rec.Clone()
		if id != "" {
			rec.AddAttrs(slog.String("request_id", id))
		}
		if sc.IsValid() {
			rec.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
		}
		// Without export the span is the caller's: its id would mislead.
		if sc.IsValid() && span.IsRecording() {
			rec.AddAttrs(slog.String("span_id", sc.SpanID().String()))
		}
	}
	return h.Handler.Handle(ctx, rec)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler {
	return logHandler{h.Handler.WithGroup(name)}
}
