package grpcserver

import (
	"context"
	"fmt"

	"github.com/modelserver/modelserver/oip"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
	"github.com/modelserver/modelserver/tensor"
)

// service implements inference.GRPCInferenceService.
type service struct {
	pb.UnimplementedGRPCInferenceServiceServer
	srv *Server
}

// ServerLive implements GRPCInferenceServiceServer: a server that answers
// is live.
func (s *service) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

// ServerReady implements GRPCInferenceServiceServer.
func (s *service) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	_, err := s.srv.readyModel()
	return &pb.ServerReadyResponse{Ready: err == nil}, nil
}

// ModelReady implements GRPCInferenceServiceServer. While loading or
// closing it answers false for any name; once ready an unknown model or
// version is NOT_FOUND.
func (s *service) ModelReady(_ context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	m, err := s.srv.readyModel()
	if err != nil {
		return &pb.ModelReadyResponse{Ready: false}, nil
	}
	if err := m.id.Lookup(req.GetName(), req.GetVersion()); err != nil {
		return nil, s.srv.logged("ModelReady", err)
	}
	return &pb.ModelReadyResponse{Ready: true}, nil
}

// ServerMetadata implements GRPCInferenceServiceServer.
func (s *service) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return &pb.ServerMetadataResponse{Name: s.srv.opts.ServerName, Version: s.srv.opts.ServerVersion, Extensions: []string{}}, nil
}

// ModelMetadata implements GRPCInferenceServiceServer.
func (s *service) ModelMetadata(_ context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	m, err := s.srv.lookup(req.GetName(), req.GetVersion())
	if err == nil {
		err = m.metadataErr
	}
	if err != nil {
		return nil, s.srv.logged("ModelMetadata", err)
	}
	return m.metadata, nil
}

// ModelInfer implements GRPCInferenceServiceServer.
func (s *service) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	resp, err := s.srv.infer(ctx, req)
	if err != nil {
		return nil, s.srv.logged("ModelInfer", err)
	}
	return resp, nil
}

// infer runs one unary request on a model with a Predictor.
func (s *Server) infer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	m, err := s.lookup(req.GetModelName(), req.GetModelVersion())
	if err != nil {
		return nil, err
	}
	if m.Predictor == nil {
		return nil, fmt.Errorf("%w: model %q streams its answer in chunks, which ModelInfer cannot return; use ModelStreamInfer",
			oip.ErrUnsupported, m.Name)
	}
	inputs, sel, err := m.prepare(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	outputs, err := m.Predictor.Predict(ctx, inputs)
	if err != nil {
		return nil, err
	}
	resp := m.newResponse(req)
	if err := oip.EncodeOutputs(resp, sel, outputs); err != nil {
		return nil, err
	}
	return resp, nil
}

// prepare decodes req's inputs, checks them against the signature and
// resolves the outputs to return.
func (m *servedModel) prepare(req *pb.ModelInferRequest) (map[string]tensor.Tensor, oip.OutputSelection, error) {
	inputs, err := oip.DecodeInputs(req)
	if err != nil {
		return nil, oip.OutputSelection{}, err
	}
	if err := m.Signature.Check(inputs); err != nil {
		return nil, oip.OutputSelection{}, err
	}
	sel, err := oip.SelectOutputs(req, m.Signature)
	if err != nil {
		return nil, oip.OutputSelection{}, err
	}
	return inputs, sel, nil
}

// newResponse returns a response to req without outputs.
func (m *servedModel) newResponse(req *pb.ModelInferRequest) *pb.ModelInferResponse {
	return &pb.ModelInferResponse{ModelName: m.Name, ModelVersion: m.Version, Id: req.GetId()}
}

func (s *Server) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.opts.PredictTimeout > 0 {
		return context.WithTimeout(ctx, s.opts.PredictTimeout)
	}
	return context.WithCancel(ctx)
}
