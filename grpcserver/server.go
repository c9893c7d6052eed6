package grpcserver

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/modelserver/modelserver/oip"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
)

// Predictor, Streamer and Model are the Open Inference Protocol's view of
// the served model, shared with the OIP HTTP handler; see package oip.
type (
	Predictor = oip.Predictor
	Streamer  = oip.Streamer
	Model     = oip.Model
)

// Options configure a Server. Zero fields take the documented defaults.
type Options struct {
	// MaxMessageBytes caps one received and one sent message; a larger
	// request fails with RESOURCE_EXHAUSTED. Default DefaultMaxMessageBytes
	// (100 MiB, the HTTP body limit).
	MaxMessageBytes int
	// PredictTimeout bounds queueing plus execution of one request, on top
	// of the client's deadline; past it the request fails with
	// DEADLINE_EXCEEDED. 0 means no limit of the server's own.
	PredictTimeout time.Duration
	// MaxStreamInFlight bounds the requests running at once on one
	// ModelStreamInfer stream. Default DefaultMaxStreamInFlight.
	MaxStreamInFlight int
	// ServerName and ServerVersion are reported by ServerMetadata.
	// Default name oip.DefaultServerName, version "".
	ServerName    string
	ServerVersion string
	// Logger receives errors that are the server's fault. Default
	// slog.Default().
	Logger *slog.Logger
	// GRPCOptions are passed to grpc.NewServer after the server's own
	// message size limits (credentials, keepalive, interceptors, ...).
	GRPCOptions []grpc.ServerOption
}

// Defaults of Options.
const (
	DefaultMaxMessageBytes   = 100 << 20
	DefaultMaxStreamInFlight = 64
)

// Server serves one model over gRPC. Create it with New, start it with
// Serve, publish the model with SetReady and end it with Shutdown or Stop.
type Server struct {
	opts    Options
	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	model   atomic.Pointer[servedModel]
	closing atomic.Bool
}

// servedModel is a published Model with its defaults applied.
type servedModel struct {
	Model
	id          oip.Model // name, version, platform and signature
	metadata    *pb.ModelMetadataResponse
	metadataErr error
}

// New returns a server whose model is not ready yet, with the inference,
// health and reflection services registered.
func New(opts Options) *Server {
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.MaxStreamInFlight <= 0 {
		opts.MaxStreamInFlight = DefaultMaxStreamInFlight
	}
	if opts.ServerName == "" {
		opts.ServerName = oip.DefaultServerName
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger, health: health.NewServer()}
	grpcOpts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.MaxMessageBytes),
		grpc.MaxSendMsgSize(opts.MaxMessageBytes),
	}, opts.GRPCOptions...)
	s.grpc = grpc.NewServer(grpcOpts...)
	pb.RegisterGRPCInferenceServiceServer(s.grpc, &service{srv: s})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	for _, name := range healthServices {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	return s
}

// healthServices are the names the health service reports on: the whole
// server ("") and the inference service.
var healthServices = []string{"", pb.GRPCInferenceService_ServiceDesc.ServiceName}

// SetReady publishes the loaded model: readiness turns true, health turns
// SERVING and inference runs. m.Name must be set.
func (s *Server) SetReady(m Model) {
	id := oip.Model{Name: m.Name, Version: m.Version, Platform: m.Platform, Signature: m.Signature}.WithDefaults()
	m.Version, m.Platform = id.Version, id.Platform
	sm := &servedModel{Model: m, id: id}
	if md, err := oip.ModelMetadata(id); err != nil {
		sm.metadataErr = err
	} else {
		sm.metadata = &pb.ModelMetadataResponse{Name: md.Name, Versions: md.Versions, Platform: md.Platform,
			Inputs: tensorMetadata(md.Inputs), Outputs: tensorMetadata(md.Outputs)}
	}
	s.model.Store(sm)
	if !s.closing.Load() {
		for _, name := range healthServices {
			s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
		}
	}
}

func tensorMetadata(ts []oip.TensorMetadata) []*pb.ModelMetadataResponse_TensorMetadata {
	out := make([]*pb.ModelMetadataResponse_TensorMetadata, len(ts))
	for i, t := range ts {
		out[i] = &pb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape}
	}
	return out
}

// SetClosing turns readiness false and health NOT_SERVING for good, and
// makes new requests fail with UNAVAILABLE, while requests in flight
// finish.
func (s *Server) SetClosing() {
	s.closing.Store(true)
	s.health.Shutdown()
}

// Serve accepts connections on lis until Shutdown or Stop; see
// grpc.Server.Serve.
func (s *Server) Serve(lis net.Listener) error { return s.grpc.Serve(lis) }

// Shutdown calls SetClosing, stops accepting connections and waits for the
// RPCs in flight to finish. When ctx ends first it calls Stop, which
// cancels them, and returns ctx's error. Long-lived RPCs (health Watch,
// idle ModelStreamInfer streams) end only that way.
func (s *Server) Shutdown(ctx context.Context) error {
	s.SetClosing()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
		return ctx.Err()
	}
}

// Stop closes every listener and connection at once, cancelling the
// context of every RPC in flight. It is safe to call more than once.
func (s *Server) Stop() {
	s.SetClosing()
	s.grpc.Stop()
}

// readyModel returns the published model, or an error while loading or
// closing.
func (s *Server) readyModel() (*servedModel, error) {
	if s.closing.Load() {
		return nil, errShuttingDown
	}
	m := s.model.Load()
	if m == nil {
		return nil, errNotReady
	}
	return m, nil
}

// lookup returns the ready model a request names.
func (s *Server) lookup(name, version string) (*servedModel, error) {
	m, err := s.readyModel()
	if err != nil {
		return nil, err
	}
	if err := m.id.Lookup(name, version); err != nil {
		return nil, err
	}
	return m, nil
}

// logged returns err as a gRPC status error, logging it when it is the
// server's fault.
func (s *Server) logged(method string, err error) error {
	st := statusOf(err)
	if st.Code() == codes.Internal || st.Code() == codes.Unknown {
		s.log.Error("gRPC request failed", "method", method, "code", st.Code().String(), "error", err)
	}
	return st.Err()
}
