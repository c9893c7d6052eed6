package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"io"

	otelcodes "go.opentelemetry.io/otel/codes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/modelserver/modelserver/oip"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
	"github.com/modelserver/modelserver/telemetry"
	"github.com/modelserver/modelserver/tensor"
)

// Triton's stream parameters.
const (
	// ParamFinalResponse is the response parameter (bool) that marks the
	// response completing a request.
	ParamFinalResponse = "triton_final_response"
	// ParamEnableEmptyFinalResponse is the request parameter (bool) that
	// asks for an empty final response after a streaming model's chunks.
	ParamEnableEmptyFinalResponse = "triton_enable_empty_final_response"
)

// inferStream is the state of one ModelStreamInfer call. The handler
// goroutine is the only one that calls Send; one reader goroutine calls
// Recv; each request runs in its own goroutine.
type inferStream struct {
	srv *Server
	// ctx is cancelled when the client leaves or the stream fails; every
	// request on the stream runs under it.
	ctx context.Context
	// out carries responses to the writer. Unbuffered: a sender waits
	// until the writer takes its response (or ctx ends).
	out chan *pb.ModelStreamInferResponse
	// slots bounds the requests in flight: a request holds one slot from
	// before its goroutine starts until it has returned. Holding all of
	// them means no request is running and none can start.
	slots chan struct{}
	// finished is signalled (without blocking; 1-buffered) each time a
	// request releases its slot.
	finished chan struct{}
}

// ModelStreamInfer implements GRPCInferenceServiceServer; see the package
// documentation for its behaviour.
func (s *service) ModelStreamInfer(stream pb.GRPCInferenceService_ModelStreamInferServer) error {
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	st := &inferStream{
		srv:      s.srv,
		ctx:      ctx,
		out:      make(chan *pb.ModelStreamInferResponse),
		slots:    make(chan struct{}, s.srv.opts.MaxStreamInFlight),
		finished: make(chan struct{}, 1),
	}
	received := make(chan error, 1)
	go func() { received <- st.receive(stream) }()

	var idle chan struct{} // closed once the reader has ended and no request is running
	var recvErr error
	draining, drained := s.srv.draining, false
	for {
		select {
		case resp := <-st.out:
			if err := send(stream, resp, s.srv.opts.MaxMessageBytes); err != nil {
				cancel(err)
				if idle != nil {
					<-idle
				} else {
					st.waitIdle()
					// The reader ends once the RPC is over and Recv fails.
				}
				return s.srv.logged("ModelStreamInfer", err)
			}
		case recvErr = <-received:
			received = nil
			if !errors.Is(recvErr, io.EOF) {
				cancel(recvErr) // the client is gone: stop everything in flight
			}
			idle = make(chan struct{})
			go func() {
				st.waitIdle()
				close(idle)
			}()
		case <-idle:
			if errors.Is(recvErr, io.EOF) {
				return nil // the client half-closed and every request is answered
			}
			return s.srv.logged("ModelStreamInfer", recvErr)
		case <-draining:
			draining, drained = nil, true
		case <-st.finished:
		}
		// Draining: once the requests in flight are answered (new ones
		// fail fast with UNAVAILABLE), the stream ends with UNAVAILABLE
		// rather than hold the shutdown open.
		if drained && idle == nil && len(st.slots) == 0 {
			cancel(errShuttingDown)
			return s.srv.logged("ModelStreamInfer", errShuttingDown)
		}
	}
}

// send writes one response. A response larger than the message size limit
// would end the whole stream with RESOURCE_EXHAUSTED, so it is replaced by
// an error response for its request, and the stream goes on.
func send(stream pb.GRPCInferenceService_ModelStreamInferServer, resp *pb.ModelStreamInferResponse, limit int) error {
	if size := proto.Size(resp); size > limit && resp.GetErrorMessage() == "" {
		r := resp.GetInferResponse()
		resp = errorResponse(r.GetModelName(), r.GetModelVersion(), r.GetId(), status.Errorf(codes.ResourceExhausted,
			"response of %d bytes is larger than the %d-byte message size limit", size, limit))
	}
	return stream.Send(resp)
}

// receive reads requests until the client half-closes (io.EOF), the stream
// fails or ctx ends, starting one goroutine per request once a slot is free.
func (st *inferStream) receive(stream pb.GRPCInferenceService_ModelStreamInferServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		select {
		case st.slots <- struct{}{}:
		case <-st.ctx.Done():
			return context.Cause(st.ctx)
		}
		if err := st.ctx.Err(); err != nil {
			<-st.slots
			return context.Cause(st.ctx)
		}
		go st.serve(req)
	}
}

// waitIdle returns once no request is running and none can start: it
// takes every slot and keeps them.
func (st *inferStream) waitIdle() {
	for range cap(st.slots) {
		st.slots <- struct{}{}
	}
}

// serve runs one request and sends its responses; it releases its slot
// when done.
func (st *inferStream) serve(req *pb.ModelInferRequest) {
	defer func() {
		<-st.slots
		select {
		case st.finished <- struct{}{}:
		default:
		}
	}()
	m, err := st.srv.lookup(req.GetModelName(), req.GetModelVersion())
	if err != nil {
		st.fail(req, err)
		return
	}
	emptyFinal, _, err := oip.BoolParameter(req.GetParameters(), ParamEnableEmptyFinalResponse)
	if err != nil {
		st.fail(req, fmt.Errorf("%w: %w", errInvalidParameter, err))
		return
	}
	inputs, sel, err := m.prepare(req)
	if err != nil {
		st.fail(req, err)
		return
	}
	ctx, cancel := st.srv.withTimeout(st.ctx)
	defer cancel()

	if m.Streamer == nil {
		outputs, err := m.Predictor.Predict(ctx, inputs)
		if err != nil {
			st.fail(req, err)
			return
		}
		resp := m.newResponse(req)
		if err := oip.EncodeOutputs(resp, sel, outputs); err != nil {
			st.fail(req, err)
			return
		}
		setFinal(resp, true)
		st.emit(ctx, &pb.ModelStreamInferResponse{InferResponse: resp})
		return
	}

	ctx, span := st.srv.tracer.Start(ctx, telemetry.SpanStream)
	defer span.End()
	err = m.Streamer.Stream(ctx, inputs, func(chunk map[string]tensor.Tensor) error {
		resp := m.newResponse(req)
		if err := oip.EncodeOutputs(resp, sel, chunk); err != nil {
			return err
		}
		setFinal(resp, false)
		return st.emit(ctx, &pb.ModelStreamInferResponse{InferResponse: resp})
	})
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
		st.fail(req, err)
		return
	}
	if emptyFinal {
		resp := m.newResponse(req)
		setFinal(resp, true)
		st.emit(ctx, &pb.ModelStreamInferResponse{InferResponse: resp})
	}
}

// emit hands one response to the writer, failing once ctx ends.
func (st *inferStream) emit(ctx context.Context, resp *pb.ModelStreamInferResponse) error {
	select {
	case st.out <- resp:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// fail sends the error response for req, unless the stream itself is
// over. It runs under the stream's context, not the request's, so a request
// that timed out still gets its DEADLINE_EXCEEDED answer.
func (st *inferStream) fail(req *pb.ModelInferRequest, err error) {
	if st.ctx.Err() != nil {
		return
	}
	st.srv.logged("ModelStreamInfer", err)
	version := req.GetModelVersion()
	if m := st.srv.model.Load(); m != nil && version == "" {
		version = m.Version
	}
	st.emit(st.ctx, errorResponse(req.GetModelName(), version, req.GetId(), err))
}

// errorResponse is the stream message reporting a failed request:
// error_message is "CODE: message" (CODE as grpc codes.Code.String names
// it), and infer_response identifies the request and marks it complete.
func errorResponse(model, version, id string, err error) *pb.ModelStreamInferResponse {
	st := statusOf(err)
	resp := &pb.ModelInferResponse{ModelName: model, ModelVersion: version, Id: id}
	setFinal(resp, true)
	return &pb.ModelStreamInferResponse{ErrorMessage: st.Code().String() + ": " + st.Message(), InferResponse: resp}
}

// setFinal sets Triton's triton_final_response parameter.
func setFinal(resp *pb.ModelInferResponse, final bool) {
	if resp.Parameters == nil {
		resp.Parameters = make(map[string]*pb.InferParameter, 1)
	}
	resp.Parameters[ParamFinalResponse] = &pb.InferParameter{ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: final}}
}
