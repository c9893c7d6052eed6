package grpcserver

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/modelserver/modelserver/internal/auth"
	"github.com/modelserver/modelserver/internal/shutdown"
	"github.com/modelserver/modelserver/oip"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
	"github.com/modelserver/modelserver/telemetry"
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
	// Logger receives the access log (one line per RPC, probes left out)
	// and errors that are the server's fault; lines carry request_id,
	// trace_id and span_id. Default slog.Default().
	Logger *slog.Logger
	// APIKeys, when enabled, are required (metadata "authorization":
	// "Api-Key <key>" or "Bearer <key>") on every method except
	// OpenMethods; without an accepted key an RPC fails with
	// UNAUTHENTICATED.
	APIKeys *auth.Keys
	// OpenMethods are full method names ("/package.Service/Method") served
	// without an API key. nil means DefaultOpenMethods; an empty slice
	// protects every method.
	OpenMethods []string
	// TracerProvider and Propagator: the RPC spans continue the trace in
	// the client's traceparent metadata. Defaults otel.GetTracerProvider()
	// and telemetry.Propagator().
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// MaxConcurrentStreams bounds the RPCs in flight on one connection.
	// Default DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// ConnectionTimeout bounds a new connection's handshake, so a client
	// that connects and stays silent is dropped. Default
	// DefaultConnectionTimeout.
	ConnectionTimeout time.Duration
	// GRPCOptions are passed to grpc.NewServer after the server's own
	// options (message size limits, the limits above, keepalive as
	// DefaultKeepalive and DefaultKeepaliveEnforcement, tracing,
	// interceptors), so they can override them.
	GRPCOptions []grpc.ServerOption
}

// Defaults of Options.
const (
	DefaultMaxMessageBytes      = 100 << 20
	DefaultMaxStreamInFlight    = 64
	DefaultMaxConcurrentStreams = 1024
	DefaultConnectionTimeout    = 10 * time.Second
)

// Keepalive defaults: the server pings a connection idle for a minute and
// drops it when the ping is not answered in 20 s; clients may ping every 10
// s, even without RPCs in flight, and are disconnected when they ping more
// often.
var (
	DefaultKeepalive            = keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}
	DefaultKeepaliveEnforcement = keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}
)

// CancelGrace is how long RPCs get to answer after the grace period of
// Shutdown ends, before the connections are closed.
const CancelGrace = 2 * time.Second

// Server serves one model over gRPC. Create it with New, start it with
// Serve, publish the model with SetReady and end it with Shutdown or Stop.
type Server struct {
	opts    Options
	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	model   atomic.Pointer[servedModel]
	closing atomic.Bool
	open    map[string]bool // OpenMethods
	tracer  trace.Tracer
	stopper *shutdown.Stopper
	// draining is closed by SetClosing; ModelStreamInfer streams end once
	// their requests in flight are answered.
	draining  chan struct{}
	drainOnce sync.Once
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
	if opts.OpenMethods == nil {
		opts.OpenMethods = DefaultOpenMethods
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = otel.GetTracerProvider()
	}
	if opts.Propagator == nil {
		opts.Propagator = telemetry.Propagator()
	}
	if opts.MaxConcurrentStreams == 0 {
		opts.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if opts.ConnectionTimeout <= 0 {
		opts.ConnectionTimeout = DefaultConnectionTimeout
	}
	s := &Server{
		opts:     opts,
		log:      telemetry.Logger(opts.Logger),
		health:   health.NewServer(),
		open:     make(map[string]bool),
		tracer:   opts.TracerProvider.Tracer(telemetry.TracerName),
		stopper:  shutdown.NewStopper(),
		draining: make(chan struct{}),
	}
	for _, m := range opts.OpenMethods {
		s.open[m] = true
	}
	grpcOpts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.MaxMessageBytes),
		grpc.MaxSendMsgSize(opts.MaxMessageBytes),
		grpc.MaxConcurrentStreams(opts.MaxConcurrentStreams),
		grpc.ConnectionTimeout(opts.ConnectionTimeout),
		grpc.KeepaliveParams(DefaultKeepalive),
		grpc.KeepaliveEnforcementPolicy(DefaultKeepaliveEnforcement),
		grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(opts.TracerProvider), otelgrpc.WithPropagators(opts.Propagator))),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
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
	s.drainOnce.Do(func() { close(s.draining) })
}

// Serve accepts connections on lis until Shutdown or Stop; see
// grpc.Server.Serve.
func (s *Server) Serve(lis net.Listener) error { return s.grpc.Serve(lis) }

// Shutdown calls SetClosing, stops accepting connections and waits for the
// RPCs in flight to finish. When ctx ends first it cancels them with
// shutdown.ErrShuttingDown, so that they fail with UNAVAILABLE, gives them
// CancelGrace to answer, then calls Stop, which closes the connections, and
// returns ctx's error. Long-lived RPCs (health Watch, idle ModelStreamInfer
// streams) end only that way.
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
	}
	s.stopper.Stop()
	t := time.NewTimer(CancelGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.grpc.Stop()
		<-done
	}
	return ctx.Err()
}

// Stop closes every listener and connection at once, cancelling the
// context of every RPC in flight. It is safe to call more than once.
func (s *Server) Stop() {
	s.SetClosing()
	s.stopper.Stop()
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
