package grpcserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/testmodel"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
	"github.com/modelserver/modelserver/tensor"
)

func TestLifecycle(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t, Options{ServerVersion: "0.1.0"}, nil)
	c, health := ts.client, healthpb.NewHealthClient(ts.conn)

	check := func(phase string, ready bool) {
		t.Helper()
		live, err := c.ServerLive(ctx, &pb.ServerLiveRequest{})
		if err != nil || !live.Live {
			t.Errorf("%s: ServerLive = %v, %v, want live", phase, live, err)
		}
		sr, err := c.ServerReady(ctx, &pb.ServerReadyRequest{})
		if err != nil || sr.Ready != ready {
			t.Errorf("%s: ServerReady = %v, %v, want ready %v", phase, sr, err, ready)
		}
		mr, err := c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "mixed"})
		if err != nil || mr.Ready != ready {
			t.Errorf("%s: ModelReady(mixed) = %v, %v, want ready %v", phase, mr, err, ready)
		}
		wantHealth := healthpb.HealthCheckResponse_NOT_SERVING
		if ready {
			wantHealth = healthpb.HealthCheckResponse_SERVING
		}
		for _, svc := range []string{"", "inference.GRPCInferenceService"} {
			h, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || h.Status != wantHealth {
				t.Errorf("%s: health.Check(%q) = %v, %v, want %v", phase, svc, h, err, wantHealth)
			}
		}
		md, err := c.ServerMetadata(ctx, &pb.ServerMetadataRequest{})
		if err != nil || md.Name != "modelserver" || md.Version != "0.1.0" {
			t.Errorf("%s: ServerMetadata = %v, %v", phase, md, err)
		}
		if !ready {
			_, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "mixed"})
			if status.Code(err) != codes.Unavailable {
				t.Errorf("%s: ModelMetadata error = %v, want Unavailable", phase, err)
			}
			_, err = c.ModelInfer(ctx, mixedRequest("x"))
			if status.Code(err) != codes.Unavailable {
				t.Errorf("%s: ModelInfer error = %v, want Unavailable", phase, err)
			}
		}
	}
	check("loading", false)
	ts.srv.SetReady(Model{Name: "mixed", Signature: mixedSignature, Predictor: mixedFake})
	check("ready", true)

	md, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "mixed", Version: "1"})
	want := &pb.ModelMetadataResponse{Name: "mixed", Versions: []string{"1"}, Platform: "onnxruntime_onnx",
		Inputs: []*pb.ModelMetadataResponse_TensorMetadata{
			{Name: "a", Datatype: "FP32", Shape: []int64{-1, 4}},
			{Name: "b", Datatype: "INT64", Shape: []int64{-1, 4}},
			{Name: "flag", Datatype: "BOOL", Shape: []int64{-1, 1}},
		},
		Outputs: []*pb.ModelMetadataResponse_TensorMetadata{
			{Name: "sum", Datatype: "FP32", Shape: []int64{-1, 4}},
			{Name: "row_total", Datatype: "INT64", Shape: []int64{-1}},
			{Name: "positive", Datatype: "BOOL", Shape: []int64{-1, 4}},
			{Name: "scaled", Datatype: "FP64", Shape: []int64{-1, 4}},
		}}
	if err != nil || !proto.Equal(md, want) {
		t.Errorf("ModelMetadata = %v, %v, want %v", md, err, want)
	}
	for _, req := range []*pb.ModelReadyRequest{{Name: "other"}, {Name: "mixed", Version: "2"}} {
		if _, err := c.ModelReady(ctx, req); status.Code(err) != codes.NotFound {
			t.Errorf("ModelReady(%v) error = %v, want NotFound", req, err)
		}
	}

	ts.srv.SetClosing()
	check("closing", false)
}

func TestModelInfer(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t, Options{}, &Model{Name: "mixed", Signature: mixedSignature, Predictor: mixedFake})

	resp, err := ts.client.ModelInfer(ctx, mixedRequest("req-7"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ModelName != "mixed" || resp.ModelVersion != "1" || resp.Id != "req-7" {
		t.Errorf("response header = %q %q %q", resp.ModelName, resp.ModelVersion, resp.Id)
	}
	names := []string{"sum", "row_total", "positive", "scaled"}
	if len(resp.Outputs) != 4 || len(resp.RawOutputContents) != 4 {
		t.Fatalf("got %d outputs, %d raw contents, want 4 and 4", len(resp.Outputs), len(resp.RawOutputContents))
	}
	for i, o := range resp.Outputs {
		if o.Name != names[i] || !slices.Equal(o.Shape, mixedWantShapes[o.Name]) || !bytes.Equal(resp.RawOutputContents[i], mixedWant[o.Name]) {
			t.Errorf("output %d = %v % x, want %s %v % x", i, o, resp.RawOutputContents[i], names[i], mixedWantShapes[names[i]], mixedWant[names[i]])
		}
	}

	// Typed inputs and outputs, a subset of outputs in request order.
	req := &pb.ModelInferRequest{ModelName: "mixed", ModelVersion: "1",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "a", Datatype: "FP32", Shape: []int64{1, 4}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, -2, 0.5, 3}}},
			{Name: "b", Datatype: "INT64", Shape: []int64{1, 4}, Contents: &pb.InferTensorContents{Int64Contents: []int64{1, 2, 3, 4}}},
			{Name: "flag", Datatype: "BOOL", Shape: []int64{1, 1}, Contents: &pb.InferTensorContents{BoolContents: []bool{true}}},
		},
		Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{
			{Name: "positive", Parameters: map[string]*pb.InferParameter{"binary_data": {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: false}}}},
			{Name: "row_total"},
		},
	}
	resp, err = ts.client.ModelInfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := []*pb.ModelInferResponse_InferOutputTensor{
		{Name: "positive", Datatype: "BOOL", Shape: []int64{1, 4}, Contents: &pb.InferTensorContents{BoolContents: []bool{true, false, true, true}}},
		{Name: "row_total", Datatype: "INT64", Shape: []int64{1}, Contents: &pb.InferTensorContents{Int64Contents: []int64{10}}},
	}
	if len(resp.RawOutputContents) != 0 || len(resp.Outputs) != 2 || !proto.Equal(resp.Outputs[0], want[0]) || !proto.Equal(resp.Outputs[1], want[1]) {
		t.Errorf("typed response = %v, want outputs %v", resp, want)
	}
}

func TestModelInferErrors(t *testing.T) {
	ctx := testContext(t)
	sig := engine.Signature{
		Inputs:  []engine.TensorSpec{{Name: "x", DType: tensor.Float32, Shape: []int64{-1}}},
		Outputs: []engine.TensorSpec{{Name: "y", DType: tensor.Float32, Shape: []int64{-1}}},
	}
	req := func(mut func(*pb.ModelInferRequest)) *pb.ModelInferRequest {
		r := &pb.ModelInferRequest{ModelName: "m",
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{2}}},
			RawInputContents: [][]byte{f32Bytes(1, 2)}}
		if mut != nil {
			mut(r)
		}
		return r
	}
	failing := func(err error) Predictor {
		return predictFunc(func(context.Context, map[string]tensor.Tensor) (map[string]tensor.Tensor, error) { return nil, err })
	}
	blocking := predictFunc(func(ctx context.Context, _ map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	tests := []struct {
		name     string
		model    Model
		opts     Options
		req      *pb.ModelInferRequest
		deadline time.Duration
		code     codes.Code
		msg      string
	}{
		{"unknown model", Model{Predictor: failing(nil)}, Options{}, req(func(r *pb.ModelInferRequest) { r.ModelName = "n" }), 0,
			codes.NotFound, `unknown model "n"`},
		{"unknown version", Model{Predictor: failing(nil)}, Options{}, req(func(r *pb.ModelInferRequest) { r.ModelVersion = "3" }), 0,
			codes.NotFound, `has no version "3"`},
		{"raw size", Model{Predictor: failing(nil)}, Options{}, req(func(r *pb.ModelInferRequest) { r.RawInputContents[0] = r.RawInputContents[0][:7] }), 0,
			codes.InvalidArgument, `input "x": raw content has 7 bytes`},
		{"signature", Model{Predictor: failing(nil)}, Options{}, req(func(r *pb.ModelInferRequest) { r.Inputs[0].Shape = []int64{1, 2} }), 0,
			codes.InvalidArgument, `input "x": expected rank 1`},
		{"unknown output", Model{Predictor: failing(nil)}, Options{}, req(func(r *pb.ModelInferRequest) {
			r.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "z"}}
		}), 0, codes.InvalidArgument, `unknown output "z"`},
		{"queue full", Model{Predictor: failing(batching.ErrQueueFull)}, Options{}, req(nil), 0, codes.ResourceExhausted, "queue full"},
		{"queue timeout", Model{Predictor: failing(batching.ErrQueueTimeout)}, Options{}, req(nil), 0, codes.ResourceExhausted, "timed out waiting in the queue"},
		{"closed", Model{Predictor: failing(batching.ErrClosed)}, Options{}, req(nil), 0, codes.Unavailable, "batching: closed"},
		{"runtime", Model{Predictor: failing(fmt.Errorf("%w: Non-zero status code", engine.ErrRuntime))}, Options{}, req(nil), 0,
			codes.Internal, "model execution failed: Non-zero status code"},
		{"missing output", Model{Predictor: failing(nil)}, Options{}, req(nil), 0, codes.Internal, `output "y" is missing`},
		{"client deadline", Model{Predictor: blocking}, Options{}, req(nil), 20 * time.Millisecond, codes.DeadlineExceeded, ""},
		{"predict timeout", Model{Predictor: blocking}, Options{PredictTimeout: 20 * time.Millisecond}, req(nil), 0,
			codes.DeadlineExceeded, "context deadline exceeded"},
		{"streaming model", Model{Streamer: streamFunc(func(context.Context, map[string]tensor.Tensor, func(map[string]tensor.Tensor) error) error {
			return nil
		})},
			Options{}, req(nil), 0, codes.Unimplemented, "use ModelStreamInfer"},
	}
	for _, tt := range tests {
		tt.model.Name, tt.model.Signature = "m", sig
		ts := startServer(t, tt.opts, &tt.model)
		callCtx := ctx
		if tt.deadline > 0 {
			var cancel context.CancelFunc
			callCtx, cancel = context.WithTimeout(ctx, tt.deadline)
			defer cancel()
		}
		_, err := ts.client.ModelInfer(callCtx, tt.req)
		if st := status.Convert(err); st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
			t.Errorf("%s: ModelInfer error = %v, want %v containing %q", tt.name, err, tt.code, tt.msg)
		}
	}
}

func TestModelInferClientCancelCancelsPredict(t *testing.T) {
	ctx := testContext(t)
	started, stopped := make(chan struct{}), make(chan error, 1)
	block := predictFunc(func(ctx context.Context, _ map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		close(started)
		<-ctx.Done()
		stopped <- ctx.Err()
		return nil, ctx.Err()
	})
	sig := engine.Signature{Inputs: []engine.TensorSpec{{Name: "x", DType: tensor.Float32, Shape: []int64{1}}}}
	ts := startServer(t, Options{}, &Model{Name: "m", Signature: sig, Predictor: block})
	callCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := ts.client.ModelInfer(callCtx, &pb.ModelInferRequest{ModelName: "m",
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1}}},
			RawInputContents: [][]byte{f32Bytes(1)}})
		done <- err
	}()
	<-started
	cancel()
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("predict's context ended with %v, want context.Canceled", err)
		}
	case <-ctx.Done():
		t.Fatal("predict was not cancelled when the client cancelled")
	}
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Errorf("ModelInfer error = %v, want Canceled", err)
	}
}

func TestMaxMessageBytes(t *testing.T) {
	ctx := testContext(t)
	sig := engine.Signature{
		Inputs:  []engine.TensorSpec{{Name: "x", DType: tensor.Uint8, Shape: []int64{-1}}},
		Outputs: []engine.TensorSpec{{Name: "y", DType: tensor.Uint8, Shape: []int64{-1}}},
	}
	grow := predictFunc(func(_ context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		n := int64(len(in["x"].Data)) * 100
		return map[string]tensor.Tensor{"y": {DType: tensor.Uint8, Shape: []int64{n}, Data: make([]byte, n)}}, nil
	})
	ts := startServer(t, Options{MaxMessageBytes: 4096}, &Model{Name: "m", Signature: sig, Predictor: grow})
	req := func(n int) *pb.ModelInferRequest {
		return &pb.ModelInferRequest{ModelName: "m",
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "UINT8", Shape: []int64{int64(n)}}},
			RawInputContents: [][]byte{make([]byte, n)}}
	}
	if _, err := ts.client.ModelInfer(ctx, req(10)); err != nil {
		t.Errorf("ModelInfer of 10 bytes answering 1000 = %v", err)
	}
	if _, err := ts.client.ModelInfer(ctx, req(5000)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("ModelInfer of a 5000-byte request with a 4096-byte limit = %v, want ResourceExhausted", err)
	}
	if _, err := ts.client.ModelInfer(ctx, req(100)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("ModelInfer answering 10000 bytes with a 4096-byte limit = %v, want ResourceExhausted", err)
	}
}

func TestShutdown(t *testing.T) {
	ctx := testContext(t)
	started := make(chan struct{})
	var stopped = make(chan error, 1)
	block := predictFunc(func(ctx context.Context, _ map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		close(started)
		<-ctx.Done()
		stopped <- ctx.Err()
		return nil, ctx.Err()
	})
	sig := engine.Signature{Inputs: []engine.TensorSpec{{Name: "x", DType: tensor.Float32, Shape: []int64{1}}}}
	ts := serve(t, Options{}, &Model{Name: "m", Signature: sig, Predictor: block})
	defer ts.conn.Close()
	done := make(chan error, 1)
	go func() {
		_, err := ts.client.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m",
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1}}},
			RawInputContents: [][]byte{f32Bytes(1)}})
		done <- err
	}()
	<-started
	// The request in flight outlives the grace period: Shutdown then stops
	// the server, which cancels it.
	graceCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := ts.srv.Shutdown(graceCtx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	if err := <-stopped; !errors.Is(err, context.Canceled) {
		t.Errorf("in-flight predict ended with %v, want context.Canceled", err)
	}
	if err := <-done; status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("in-flight ModelInfer past the grace period = %v, want UNAVAILABLE shutting down", err)
	}
	if err := <-ts.served; err != nil {
		t.Errorf("Serve = %v", err)
	}
	ts.srv.Stop() // a second stop is a no-op
}

// loadMixed loads onnxgen.MixedFixture behind a Batcher, as the command
// serves it.
func loadMixed(t testing.TB) *Model {
	t.Helper()
	sig, b := testmodel.ServeMixed(t)
	return &Model{Name: "mixed", Signature: sig, Predictor: b}
}

func TestModelInferONNX(t *testing.T) {
	ctx := testContext(t)
	model := loadMixed(t)
	ts := startServer(t, Options{}, model)
	md, err := ts.client.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "mixed"})
	if err != nil || len(md.Inputs) != 3 || md.Inputs[0].Datatype != "FP32" || !slices.Equal(md.Inputs[0].Shape, []int64{-1, 4}) {
		t.Errorf("ModelMetadata = %v, %v", md, err)
	}
	resp, err := ts.client.ModelInfer(ctx, mixedRequest("onnx"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for i, o := range resp.Outputs {
		got[o.Name] = resp.RawOutputContents[i]
		if !slices.Equal(o.Shape, mixedWantShapes[o.Name]) {
			t.Errorf("output %s shape = %v, want %v", o.Name, o.Shape, mixedWantShapes[o.Name])
		}
	}
	for name, want := range mixedWant {
		if !bytes.Equal(got[name], want) {
			t.Errorf("output %s = % x, want % x", name, got[name], want)
		}
	}
	// A dtype the model does not take is the client's fault.
	bad := mixedRequest("bad")
	bad.Inputs[1].Datatype, bad.RawInputContents[1] = "INT32", bad.RawInputContents[1][:32]
	if _, err := ts.client.ModelInfer(ctx, bad); status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), `input "b": expected dtype int64, received int32`) {
		t.Errorf("ModelInfer with an INT32 b = %v, want InvalidArgument", err)
	}
}
