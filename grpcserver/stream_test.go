package grpcserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelserver/modelserver/engine"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
	"github.com/modelserver/modelserver/tensor"
)

// counterSignature is the fake streaming model's: input n int64 [1] (the
// number of chunks), outputs step int64 [] and blob uint8 [k].
var counterSignature = engine.Signature{
	Inputs: []engine.TensorSpec{{Name: "n", DType: tensor.Int64, Shape: []int64{1}}},
	Outputs: []engine.TensorSpec{
		{Name: "step", DType: tensor.Int64, Shape: []int64{}},
		{Name: "blob", DType: tensor.Uint8, Shape: []int64{-1}},
	},
}

// chunk is the fake model's chunk for step i: blob holds size bytes of i.
func chunk(i int64, size int) map[string]tensor.Tensor {
	return map[string]tensor.Tensor{
		"step": {DType: tensor.Int64, Shape: []int64{}, Data: i64Bytes(i)},
		"blob": {DType: tensor.Uint8, Shape: []int64{int64(size)}, Data: bytes.Repeat([]byte{byte(i)}, size)},
	}
}

// countTo emits n chunks, n read from the input.
var countTo = streamFunc(func(_ context.Context, in map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) error {
	n := int64(binary.LittleEndian.Uint64(in["n"].Data))
	for i := range n {
		if err := emit(chunk(i, 3)); err != nil {
			return err
		}
	}
	return nil
})

func counterRequest(id string, n int64, emptyFinal bool) *pb.ModelInferRequest {
	req := &pb.ModelInferRequest{ModelName: "counter", Id: id,
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "n", Datatype: "INT64", Shape: []int64{1}}},
		RawInputContents: [][]byte{i64Bytes(n)},
	}
	if emptyFinal {
		req.Parameters = map[string]*pb.InferParameter{ParamEnableEmptyFinalResponse: {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: true}}}
	}
	return req
}

// final reports the response's triton_final_response parameter.
func final(t *testing.T, r *pb.ModelStreamInferResponse) bool {
	t.Helper()
	p, ok := r.GetInferResponse().GetParameters()[ParamFinalResponse]
	if !ok {
		t.Errorf("response %v has no %s parameter", r, ParamFinalResponse)
	}
	return p.GetBoolParam()
}

// step returns a chunk response's step output.
func step(t *testing.T, r *pb.ModelStreamInferResponse) int64 {
	t.Helper()
	ir := r.GetInferResponse()
	if r.GetErrorMessage() != "" || len(ir.GetOutputs()) != 2 || len(ir.GetRawOutputContents()) != 2 || ir.Outputs[0].Name != "step" {
		t.Fatalf("not a chunk response: %v", r)
	}
	return int64(binary.LittleEndian.Uint64(ir.RawOutputContents[0]))
}

// collect sends reqs on one stream, half-closes it and returns every
// response until the server ends the stream.
func collect(t *testing.T, ctx context.Context, c pb.GRPCInferenceServiceClient, reqs ...*pb.ModelInferRequest) []*pb.ModelStreamInferResponse {
	t.Helper()
	stream, err := c.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var out []*pb.ModelStreamInferResponse
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Recv after %d responses: %v", len(out), err)
		}
		out = append(out, r)
	}
}

func byID(rs []*pb.ModelStreamInferResponse) map[string][]*pb.ModelStreamInferResponse {
	m := map[string][]*pb.ModelStreamInferResponse{}
	for _, r := range rs {
		id := r.GetInferResponse().GetId()
		m[id] = append(m[id], r)
	}
	return m
}

func TestStreamChunksAndFinalResponse(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t, Options{}, &Model{Name: "counter", Signature: counterSignature, Streamer: countTo})
	got := byID(collect(t, ctx, ts.client, counterRequest("r1", 3, true), counterRequest("r2", 2, false), counterRequest("r3", 0, true)))

	r1 := got["r1"]
	if len(r1) != 4 {
		t.Fatalf("r1 got %d responses, want 3 chunks and an empty final one", len(r1))
	}
	for i, r := range r1[:3] {
		ir := r.InferResponse
		if step(t, r) != int64(i) || final(t, r) || ir.ModelName != "counter" || ir.ModelVersion != "1" ||
			!bytes.Equal(ir.RawOutputContents[1], bytes.Repeat([]byte{byte(i)}, 3)) {
			t.Errorf("r1 chunk %d = %v", i, r)
		}
	}
	if last := r1[3]; !final(t, last) || len(last.InferResponse.Outputs) != 0 || last.ErrorMessage != "" {
		t.Errorf("r1 final response = %v, want empty with %s true", last, ParamFinalResponse)
	}

	// Without triton_enable_empty_final_response there is no final
	// response, as in Triton.
	r2 := got["r2"]
	if len(r2) != 2 || step(t, r2[0]) != 0 || step(t, r2[1]) != 1 || final(t, r2[0]) || final(t, r2[1]) {
		t.Errorf("r2 = %v, want chunks 0 and 1, not final", r2)
	}
	// A request without chunks still gets its final response.
	if r3 := got["r3"]; len(r3) != 1 || !final(t, r3[0]) || len(r3[0].InferResponse.Outputs) != 0 {
		t.Errorf("r3 = %v, want one empty final response", r3)
	}
}

// TestStreamChunkByChunk checks that each chunk reaches the client before
// the producer computes the next: the producer can only take a step when
// the test allows it.
func TestStreamChunkByChunk(t *testing.T) {
	ctx := testContext(t)
	tick := make(chan struct{})
	paced := streamFunc(func(ctx context.Context, _ map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) error {
		for i := range int64(4) {
			select {
			case <-tick:
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := emit(chunk(i, 1)); err != nil {
				return err
			}
		}
		return nil
	})
	ts := startServer(t, Options{}, &Model{Name: "counter", Signature: counterSignature, Streamer: paced})
	stream, err := ts.client.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(counterRequest("paced", 0, true)); err != nil {
		t.Fatal(err)
	}
	for i := range int64(4) {
		tick <- struct{}{}
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := step(t, r); got != i || final(t, r) {
			t.Errorf("response %d = step %d final %v", i, got, final(t, r))
		}
	}
	r, err := stream.Recv()
	if err != nil || !final(t, r) || r.InferResponse.Id != "paced" {
		t.Errorf("last response = %v, %v, want the final one", r, err)
	}
	stream.CloseSend()
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after the last response = %v, want EOF", err)
	}
}

// TestStreamCancelStopsProducer cancels a stream whose producer is far
// ahead of the client; the producer must see its emit fail and stop within
// one step, and no goroutine may be left behind.
func TestStreamCancelStopsProducer(t *testing.T) {
	before := goleak.IgnoreCurrent()
	ctx := testContext(t)
	var steps, atCancel atomic.Int64
	atCancel.Store(-1)
	returned, recorded := make(chan error, 1), make(chan struct{})
	greedy := streamFunc(func(ctx context.Context, _ map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) error {
		context.AfterFunc(ctx, func() {
			atCancel.Store(steps.Load())
			close(recorded)
		})
		for i := int64(0); ; i++ {
			steps.Add(1)
			if err := emit(chunk(i, 256<<10)); err != nil {
				returned <- err
				return err
			}
		}
	})
	ts := serve(t, Options{}, &Model{Name: "counter", Signature: counterSignature, Streamer: greedy})
	streamCtx, cancel := context.WithCancel(ctx)
	stream, err := ts.client.ModelStreamInfer(streamCtx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(counterRequest("greedy", 0, false)); err != nil {
		t.Fatal(err)
	}
	for i := range int64(2) {
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := step(t, r); got != i {
			t.Fatalf("chunk %d has step %d", i, got)
		}
	}
	// Let the producer run into backpressure, then leave.
	time.Sleep(50 * time.Millisecond)
	cancel()

	select {
	case err := <-returned:
		if code := statusOf(err).Code(); code != codes.Canceled {
			t.Errorf("emit failed with %v (%v), want a cancellation", err, code)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("producer still running 10s after the client cancelled (%d steps)", steps.Load())
	}
	for {
		// Chunks already received before the cancel may come first.
		if _, err := stream.Recv(); err != nil {
			if status.Code(err) != codes.Canceled {
				t.Errorf("client Recv after cancel = %v, want Canceled", err)
			}
			break
		}
	}
	<-recorded
	if n, at := steps.Load(), atCancel.Load(); n > at+1 {
		t.Errorf("producer took %d steps, %d of them when it was cancelled; want at most one more", n, at)
	}
	ts.close()
	goleak.VerifyNone(t, before)
}

// TestStreamCancelCancelsPredictions cancels a stream with several
// predictions in flight: every one of them sees its context end.
func TestStreamCancelCancelsPredictions(t *testing.T) {
	ctx := testContext(t)
	const n = 3
	var started sync.WaitGroup
	started.Add(n)
	stopped := make(chan error, n)
	block := predictFunc(func(ctx context.Context, _ map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		started.Done()
		<-ctx.Done()
		stopped <- ctx.Err()
		return nil, ctx.Err()
	})
	ts := startServer(t, Options{}, &Model{Name: "mixed", Signature: mixedSignature, Predictor: block})
	streamCtx, cancel := context.WithCancel(ctx)
	stream, err := ts.client.ModelStreamInfer(streamCtx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := stream.Send(mixedRequest(fmt.Sprint("r", i))); err != nil {
			t.Fatal(err)
		}
	}
	started.Wait()
	cancel()
	for range n {
		select {
		case err := <-stopped:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("prediction ended with %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a prediction was not cancelled with its stream")
		}
	}
}

// TestStreamRequestsRunConcurrently sends requests whose predictions each
// wait for all of them to have started: they complete only if the stream
// runs them at once.
func TestStreamRequestsRunConcurrently(t *testing.T) {
	ctx := testContext(t)
	const n = 4
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() {
		arrived.Wait()
		close(all)
	}()
	barrier := predictFunc(func(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		arrived.Done()
		select {
		case <-all:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return mixedFake(ctx, in)
	})
	ts := startServer(t, Options{}, &Model{Name: "mixed", Signature: mixedSignature, Predictor: barrier})
	var reqs []*pb.ModelInferRequest
	for i := range n {
		reqs = append(reqs, mixedRequest(fmt.Sprint("r", i)))
	}
	got := byID(collect(t, ctx, ts.client, reqs...))
	for i := range n {
		rs := got[fmt.Sprint("r", i)]
		if len(rs) != 1 || rs[0].ErrorMessage != "" || !final(t, rs[0]) ||
			!bytes.Equal(rs[0].InferResponse.RawOutputContents[0], mixedWant["sum"]) {
			t.Errorf("responses to r%d = %v, want one final response", i, rs)
		}
	}
}

func TestStreamMaxInFlight(t *testing.T) {
	ctx := testContext(t)
	var running, most atomic.Int64
	slow := predictFunc(func(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		now := running.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if now <= m || most.CompareAndSwap(m, now) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		return mixedFake(ctx, in)
	})
	ts := startServer(t, Options{MaxStreamInFlight: 2}, &Model{Name: "mixed", Signature: mixedSignature, Predictor: slow})
	var reqs []*pb.ModelInferRequest
	for i := range 8 {
		reqs = append(reqs, mixedRequest(fmt.Sprint("r", i)))
	}
	if got := collect(t, ctx, ts.client, reqs...); len(got) != 8 {
		t.Errorf("got %d responses, want 8", len(got))
	}
	if m := most.Load(); m > 2 {
		t.Errorf("%d requests ran at once on one stream, want at most 2", m)
	}
}

// TestStreamErrors checks that failed requests get an error response that
// names them, and that the stream goes on.
func TestStreamErrors(t *testing.T) {
	ctx := testContext(t)
	sizes := predictFunc(func(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		if in["a"].Shape[0] == 3 {
			return nil, fmt.Errorf("%w: Non-zero status code", engine.ErrRuntime)
		}
		if in["a"].Shape[0] == 5 {
			out, err := mixedFake(ctx, in)
			out["sum"] = tensor.Tensor{DType: tensor.Float32, Shape: []int64{5 << 10}, Data: make([]byte, 20<<10)}
			return out, err
		}
		return mixedFake(ctx, in)
	})
	ts := startServer(t, Options{MaxMessageBytes: 16 << 10}, &Model{Name: "mixed", Signature: mixedSignature, Predictor: sizes})

	badType := mixedRequest("bad-type")
	badType.Inputs[1].Datatype = "LONG"
	unknown := mixedRequest("unknown")
	unknown.ModelName = "other"
	badParam := mixedRequest("bad-param")
	badParam.Parameters = map[string]*pb.InferParameter{ParamEnableEmptyFinalResponse: {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "yes"}}}
	rows := func(id string, n int) *pb.ModelInferRequest {
		r := mixedRequest(id)
		for i := range r.Inputs {
			r.Inputs[i].Shape[0] = int64(n)
		}
		r.RawInputContents = [][]byte{make([]byte, 16*n), make([]byte, 32*n), make([]byte, n)}
		return r
	}
	got := byID(collect(t, ctx, ts.client, badType, unknown, badParam, rows("runtime", 3), rows("too-large", 5), mixedRequest("ok")))

	wantErrors := map[string]string{
		"bad-type":  `InvalidArgument: invalid input: input "b": unsupported datatype "LONG"`,
		"unknown":   `NotFound: model not found: unknown model "other"`,
		"bad-param": `InvalidArgument: invalid input: invalid parameter: parameter "triton_enable_empty_final_response" must be a bool_param`,
		"runtime":   `Internal: model execution failed: Non-zero status code`,
		"too-large": `ResourceExhausted: response of 20`,
	}
	for id, want := range wantErrors {
		rs := got[id]
		if len(rs) != 1 || !strings.HasPrefix(rs[0].ErrorMessage, want) || !final(t, rs[0]) || len(rs[0].InferResponse.Outputs) != 0 {
			t.Errorf("responses to %s = %v, want one error response %q", id, rs, want)
		}
	}
	if rs := got["ok"]; len(rs) != 1 || rs[0].ErrorMessage != "" || !bytes.Equal(rs[0].InferResponse.RawOutputContents[1], mixedWant["row_total"]) {
		t.Errorf("responses to ok = %v", rs)
	}
}

func TestStreamProducerFailsMidway(t *testing.T) {
	ctx := testContext(t)
	failing := streamFunc(func(_ context.Context, _ map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) error {
		if err := emit(chunk(0, 1)); err != nil {
			return err
		}
		return fmt.Errorf("%w: step 1 failed", engine.ErrRuntime)
	})
	ts := startServer(t, Options{}, &Model{Name: "counter", Signature: counterSignature, Streamer: failing})
	got := collect(t, ctx, ts.client, counterRequest("f", 0, true))
	if len(got) != 2 || step(t, got[0]) != 0 || final(t, got[0]) ||
		got[1].ErrorMessage != "Internal: model execution failed: step 1 failed" || !final(t, got[1]) || got[1].InferResponse.Id != "f" {
		t.Errorf("responses = %v, want one chunk then the error", got)
	}
}

func TestStreamWhileLoading(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t, Options{}, nil)
	got := collect(t, ctx, ts.client, counterRequest("early", 1, false))
	if len(got) != 1 || !strings.HasPrefix(got[0].ErrorMessage, "Unavailable: model is not ready") || got[0].InferResponse.Id != "early" {
		t.Errorf("responses while loading = %v", got)
	}
}

// TestStreamHalfCloseFinishesRequests half-closes the stream while a
// request runs: its response still arrives, then the stream ends with OK.
func TestStreamHalfCloseFinishesRequests(t *testing.T) {
	ctx := testContext(t)
	release := make(chan struct{})
	held := predictFunc(func(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return mixedFake(ctx, in)
	})
	ts := startServer(t, Options{}, &Model{Name: "mixed", Signature: mixedSignature, Predictor: held})
	stream, err := ts.client.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(mixedRequest("held")); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	r, err := stream.Recv()
	if err != nil || r.InferResponse.GetId() != "held" || r.ErrorMessage != "" {
		t.Fatalf("Recv = %v, %v, want the held response", r, err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after the last response = %v, want EOF (status OK)", err)
	}
}

// TestStreamONNX runs the real mixed model through ModelStreamInfer: one
// response per request.
func TestStreamONNX(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t, Options{}, loadMixed(t))
	var reqs []*pb.ModelInferRequest
	for i := range 8 {
		reqs = append(reqs, mixedRequest(fmt.Sprint("onnx-", i)))
	}
	got := byID(collect(t, ctx, ts.client, reqs...))
	for i := range 8 {
		rs := got[fmt.Sprint("onnx-", i)]
		if len(rs) != 1 || rs[0].ErrorMessage != "" || !final(t, rs[0]) {
			t.Fatalf("responses to onnx-%d = %v", i, rs)
		}
		for j, o := range rs[0].InferResponse.Outputs {
			if !bytes.Equal(rs[0].InferResponse.RawOutputContents[j], mixedWant[o.Name]) {
				t.Errorf("onnx-%d output %s = % x, want % x", i, o.Name, rs[0].InferResponse.RawOutputContents[j], mixedWant[o.Name])
			}
		}
	}
}
