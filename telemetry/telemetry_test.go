package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/goleak"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/internal/requestid"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestExportConfigured(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, false},
		{map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false},
		{map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_SERVICE_NAME": "x"}, false},
	}
	for _, tt := range tests {
		if got := ExportConfigured(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("ExportConfigured(%v) = %v, want %v", tt.env, got, tt.want)
		}
	}
}

func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := Logger(slog.New(slog.NewJSONHandler(&buf, nil)))
	if Logger(log) != log {
		t.Error("Logger wrapped an already wrapped logger")
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("t").Start(requestid.NewContext(context.Background(), "rid-1"), "s")
	log.With("a", 1).InfoContext(ctx, "hello")
	span.End()
	// A span that is not recorded is the caller's: its trace is logged,
	// not its span id.
	remote := trace.ContextWithSpanContext(context.Background(), span.SpanContext())
	ctx2, _ := noop.NewTracerProvider().Tracer("t").Start(remote, "s")
	log.InfoContext(ctx2, "unrecorded")
	log.Info("no context")

	var lines []map[string]any
	for _, b := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	traceID, spanID := span.SpanContext().TraceID().String(), span.SpanContext().SpanID().String()
	if l := lines[0]; l["request_id"] != "rid-1" || l["trace_id"] != traceID || l["span_id"] != spanID || l["a"] != 1.0 {
		t.Errorf("line with context = %v", l)
	}
	if l := lines[1]; l["trace_id"] != traceID || l["span_id"] != nil || l["request_id"] != nil {
		t.Errorf("line with an unrecorded span = %v", l)
	}
	if l := lines[2]; l["request_id"] != nil || l["trace_id"] != nil {
		t.Errorf("line without context = %v", l)
	}
}

func TestRequestRecordsQueueAndExecution(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("t")
	ctx, parent := tracer.Start(context.Background(), "request")
	ctx, r := StartRequest(ctx, tracer)
	if RequestFrom(ctx) != r || batching.RequestTracerFrom(ctx) != r {
		t.Fatal("StartRequest's context does not carry the Request")
	}
	if got := r.LogAttrs(); len(got) != 0 {
		t.Errorf("LogAttrs before any event = %v", got)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.LeftQueue(ctx, t0, t0.Add(3*time.Millisecond), nil)
	r.Executed(ctx, t0.Add(3*time.Millisecond), t0.Add(10*time.Millisecond), 8, 3, errors.New("boom"))
	parent.End()

	attrs := map[string]slog.Value{}
	for _, a := range r.LogAttrs() {
		attrs[a.Key] = a.Value
	}
	if attrs["queue_time"].Duration() != 3*time.Millisecond || attrs["batch_size"].Int64() != 8 || attrs["batch_requests"].Int64() != 3 {
		t.Errorf("LogAttrs = %v", attrs)
	}
	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	q, e := spans[SpanQueue], spans[SpanExecute]
	if q == nil || e == nil {
		t.Fatalf("spans %v, want queue and execute", spans)
	}
	for _, s := range []sdktrace.ReadOnlySpan{q, e} {
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s span's parent %s, want the request span", s.Name(), s.Parent().SpanID())
		}
	}
	if !q.StartTime().Equal(t0) || q.EndTime().Sub(q.StartTime()) != 3*time.Millisecond {
		t.Errorf("queue span %v to %v", q.StartTime(), q.EndTime())
	}
	if e.EndTime().Sub(e.StartTime()) != 7*time.Millisecond || e.Status().Description != "boom" {
		t.Errorf("execute span lasts %v, status %v", e.EndTime().Sub(e.StartTime()), e.Status())
	}
}

func TestNilRequestLogAttrs(t *testing.T) {
	var r *Request
	if got := r.LogAttrs(); got != nil {
		t.Errorf("nil Request LogAttrs = %v", got)
	}
}
