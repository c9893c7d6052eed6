package grpcserver

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/modelserver/modelserver/internal/requestid"
	"github.com/modelserver/modelserver/internal/shutdown"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
	"github.com/modelserver/modelserver/telemetry"
)

// DefaultOpenMethods are the methods served without an API key: the health
// service and the protocol's liveness and readiness.
var DefaultOpenMethods = []string{
	"/grpc.health.v1.Health/Check",
	"/grpc.health.v1.Health/Watch",
	"/grpc.health.v1.Health/List",
	"/" + pb.GRPCInferenceService_ServiceDesc.ServiceName + "/ServerLive",
	"/" + pb.GRPCInferenceService_ServiceDesc.ServiceName + "/ServerReady",
}

// metadataAuthorization is the metadata key that carries the API key.
const metadataAuthorization = "authorization"

// unaryInterceptor runs every unary RPC through begin and finish.
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, finish, err := s.begin(ctx, info.FullMethod)
	var resp any
	if err == nil {
		resp, err = handler(ctx, req)
	}
	return resp, finish(err)
}

// streamInterceptor runs every streaming RPC through begin and finish.
func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, finish, err := s.begin(ss.Context(), info.FullMethod)
	if err == nil {
		err = handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
	return finish(err)
}

// contextStream is a ServerStream with the interceptor's context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context //nolint:containedctx // the stream's context, as grpc.ServerStream.Context returns it
}

func (s *contextStream) Context() context.Context { return s.ctx }

// begin prepares an RPC: its request id (from x-baseten-request-id or
// x-request-id metadata, echoed in the x-request-id header), the API key
// check, the telemetry record and the binding to the shutdown stopper. The
// span comes from the stats handler (otelgrpc), which ran before. finish
// ends the RPC: it turns a cancellation by the shutdown into UNAVAILABLE
// and writes the access log line.
func (s *Server) begin(ctx context.Context, method string) (context.Context, func(error) error, error) {
	start := time.Now()
	md, _ := metadata.FromIncomingContext(ctx)
	id := requestid.Pick(func(key string) string {
		if v := md.Get(key); len(v) > 0 {
			return v[0]
		}
		return ""
	})
	ctx = requestid.NewContext(ctx, id)
	grpc.SetHeader(ctx, metadata.Pairs(requestid.Header, id))
	ctx, rec := telemetry.StartRequest(ctx, s.tracer)
	ctx, release := s.stopper.Bind(ctx)

	var err error
	if s.opts.APIKeys.Enabled() && !s.open[method] {
		var authorization string
		if v := md.Get(metadataAuthorization); len(v) > 0 {
			authorization = v[0]
		}
		if authErr := s.opts.APIKeys.Check(authorization); authErr != nil {
			err = statusOf(authErr).Err()
		}
	}
	finish := func(err error) error {
		defer release()
		if err != nil && shutdown.Cancelled(ctx) && status.Code(err) == codes.Canceled {
			err = statusOf(errShuttingDown).Err()
		}
		code := status.Code(err)
		if !s.open[method] || code != codes.OK {
			attrs := append([]slog.Attr{
				slog.String("method", method), slog.String("model", s.modelName()), slog.String("code", code.String()),
				slog.Duration("duration", time.Since(start)),
			}, rec.LogAttrs()...)
			s.log.LogAttrs(ctx, slog.LevelInfo, "Handled gRPC request", attrs...)
		}
		return err
	}
	return ctx, finish, err
}

// modelName is the published model's name, or "" while loading.
func (s *Server) modelName() string {
	if m := s.model.Load(); m != nil {
		return m.Name
	}
	return ""
}
