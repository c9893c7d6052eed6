package grpcserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/modelserver/modelserver/internal/syncbuf"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/auth"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
	"github.com/modelserver/modelserver/tensor"
)

// mixedEngine is the mixed model's Go reference as an engine.Model, to run
// behind a Batcher.
type mixedEngine struct{}

func (mixedEngine) Signature() engine.Signature { return mixedSignature }
func (mixedEngine) Close() error                { return nil }
func (mixedEngine) Run(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	return mixedFake(ctx, in)
}

func TestAPIKeysOnEveryMethod(t *testing.T) {
	keys, err := auth.NewKeys([]string{"k1"})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, Options{APIKeys: keys}, &Model{Name: "mixed", Signature: mixedSignature, Predictor: mixedFake})
	health := healthpb.NewHealthClient(ts.conn)
	reflection := reflectionpb.NewServerReflectionClient(ts.conn)
	calls := []struct {
		name string
		open bool
		call func(ctx context.Context) error
	}{
		{"ServerLive", true, func(ctx context.Context) error {
			_, err := ts.client.ServerLive(ctx, &pb.ServerLiveRequest{})
			return err
		}},
		{"ServerReady", true, func(ctx context.Context) error {
			_, err := ts.client.ServerReady(ctx, &pb.ServerReadyRequest{})
			return err
		}},
		{"Health.Check", true, func(ctx context.Context) error {
			_, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		}},
		{"ModelReady", false, func(ctx context.Context) error {
			_, err := ts.client.ModelReady(ctx, &pb.ModelReadyRequest{Name: "mixed"})
			return err
		}},
		{"ServerMetadata", false, func(ctx context.Context) error {
			_, err := ts.client.ServerMetadata(ctx, &pb.ServerMetadataRequest{})
			return err
		}},
		{"ModelMetadata", false, func(ctx context.Context) error {
			_, err := ts.client.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "mixed"})
			return err
		}},
		{"ModelInfer", false, func(ctx context.Context) error { _, err := ts.client.ModelInfer(ctx, mixedRequest("1")); return err }},
		{"ModelStreamInfer", false, func(ctx context.Context) error {
			stream, err := ts.client.ModelStreamInfer(ctx)
			if err != nil {
				return err
			}
			stream.Send(mixedRequest("1")) // io.EOF when the server has ended the stream; Recv says why
			resp, err := stream.Recv()
			if err == nil && resp.ErrorMessage != "" {
				t.Errorf("stream answered %s", resp.ErrorMessage)
			}
			return err
		}},
		{"ServerReflectionInfo", false, func(ctx context.Context) error {
			stream, err := reflection.ServerReflectionInfo(ctx)
			if err != nil {
				return err
			}
			stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
			_, err = stream.Recv()
			return err
		}},
	}
	for _, c := range calls {
		for _, authorization := range []string{"", "Bearer wrong", "Bearer k1", "Api-Key k1"} {
			ctx := testContext(t)
			if authorization != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", authorization)
			}
			err := c.call(ctx)
			valid := authorization == "Bearer k1" || authorization == "Api-Key k1"
			if want := !valid && !c.open; (status.Code(err) == codes.Unauthenticated) != want {
				t.Errorf("%s with %q = %v, want UNAUTHENTICATED: %v", c.name, authorization, err, want)
			}
			if (valid || c.open) && err != nil {
				t.Errorf("%s with %q = %v, want success", c.name, authorization, err)
			}
		}
	}
}

func TestRequestIDAndTraceContext(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	b := batching.New(mixedEngine{}, batching.WithMaxBatchSize(8))
	defer b.Close()
	var logs syncbuf.Buffer
	ts := startServer(t, Options{TracerProvider: tp, Logger: slog.New(slog.NewJSONHandler(&logs, nil))},
		&Model{Name: "mixed", Signature: mixedSignature, Predictor: b})

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ctx := metadata.AppendToOutgoingContext(testContext(t),
		"x-baseten-request-id", "grpc-client-id", "traceparent", "00-"+traceID+"-"+parentID+"-01")
	var header metadata.MD
	if _, err := ts.client.ModelInfer(ctx, mixedRequest("1"), grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if got := header.Get("x-request-id"); len(got) != 1 || got[0] != "grpc-client-id" {
		t.Errorf("x-request-id header = %q, want the client's id", got)
	}

	var line map[string]any
	sc := bufio.NewScanner(bytes.NewBufferString(logs.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if m["msg"] == "Handled gRPC request" && m["request_id"] == "grpc-client-id" {
			line = m
		}
	}
	for key, want := range map[string]any{"method": "/inference.GRPCInferenceService/ModelInfer", "code": "OK", "model": "mixed", "batch_size": 2.0, "trace_id": traceID} {
		if line[key] != want {
			t.Errorf("access log %s = %v, want %v (line %v)", key, line[key], want, line)
		}
	}

	var server sdktrace.ReadOnlySpan
	byParent := map[string][]string{}
	for _, sp := range rec.Ended() {
		if sp.SpanKind().String() == "server" {
			server = sp
		}
		byParent[sp.Parent().SpanID().String()] = append(byParent[sp.Parent().SpanID().String()], sp.Name())
	}
	if server == nil {
		t.Fatal("no server span")
	}
	if server.SpanContext().TraceID().String() != traceID || server.Parent().SpanID().String() != parentID {
		t.Errorf("server span %s in trace %s with parent %s, want trace %s parent %s",
			server.Name(), server.SpanContext().TraceID(), server.Parent().SpanID(), traceID, parentID)
	}
	children := byParent[server.SpanContext().SpanID().String()]
	if len(children) != 2 || children[0] != "queue" || children[1] != "execute" {
		t.Errorf("server span's children %v, want queue and execute", children)
	}
}

// TestStreamEndsWhenDraining: once the server drains, a stream answers its
// request in flight, refuses new ones explicitly and then ends with
// UNAVAILABLE; an idle stream ends at once.
func TestStreamEndsWhenDraining(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	held := predictFunc(func(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		started <- struct{}{}
		select {
		case <-release:
			return mixedFake(ctx, in)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	ts := startServer(t, Options{}, &Model{Name: "mixed", Signature: mixedSignature, Predictor: held})
	ctx := testContext(t)
	busy, err := ts.client.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idle, err := ts.client.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := busy.Send(mixedRequest("in-flight")); err != nil {
		t.Fatal(err)
	}
	<-started
	ts.srv.SetClosing()
	if _, err := idle.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("idle stream after SetClosing: %v, want UNAVAILABLE", err)
	}
	if err := busy.Send(mixedRequest("late")); err != nil {
		t.Fatal(err)
	}
	late, err := busy.Recv()
	if err != nil || late.InferResponse.GetId() != "late" || !strings.HasPrefix(late.ErrorMessage, "Unavailable") {
		t.Errorf("request sent while draining: %v, %v; want an UNAVAILABLE error response", late, err)
	}
	close(release)
	resp, err := busy.Recv()
	if err != nil || resp.ErrorMessage != "" || resp.InferResponse.GetId() != "in-flight" {
		t.Errorf("request in flight: %v, %v; want its answer", resp, err)
	}
	if _, err := busy.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("busy stream after its last answer: %v, want UNAVAILABLE", err)
	}
}
