package grpcserver

import (
	"context"
	"encoding/binary"
	"log/slog"
	"math"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/internal/testmodel"
	"github.com/modelserver/modelserver/internal/testort"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
	"github.com/modelserver/modelserver/tensor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// requireORT initialises ONNX Runtime; see internal/testort for when a
// missing library skips or fails the test.
func requireORT(t testing.TB) {
	t.Helper()
	if err := engine.InitONNXRuntime(testort.Library(t)); err != nil {
		testort.Unusable(t, err)
	}
}

// testContext is the context of one test: it ends with the test, or after
// a minute.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// testServer is a Server listening on loopback TCP with a client connected.
type testServer struct {
	srv    *Server
	addr   string
	conn   *grpc.ClientConn
	client pb.GRPCInferenceServiceClient
	served chan error
}

// startServer starts a server; m, when not nil, is published at once. The
// server and the connection are closed when the test ends.
func startServer(t testing.TB, opts Options, m *Model) *testServer {
	t.Helper()
	ts := serve(t, opts, m)
	t.Cleanup(ts.close)
	return ts
}

// serve starts a server that the caller closes.
func serve(t testing.TB, opts Options, m *Model) *testServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	srv := New(opts)
	if m != nil {
		srv.SetReady(*m)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: srv, addr: lis.Addr().String(), served: make(chan error, 1)}
	go func() { ts.served <- srv.Serve(lis) }()
	ts.conn, err = grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)))
	if err != nil {
		t.Fatal(err)
	}
	ts.client = pb.NewGRPCInferenceServiceClient(ts.conn)
	return ts
}

func (ts *testServer) close() {
	ts.conn.Close()
	ts.srv.Stop()
	<-ts.served
}

// predictFunc adapts a function to Predictor.
type predictFunc func(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error)

func (f predictFunc) Predict(ctx context.Context, in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	return f(ctx, in)
}

// streamFunc adapts a function to Streamer.
type streamFunc func(ctx context.Context, in map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) error

func (f streamFunc) Stream(ctx context.Context, in map[string]tensor.Tensor, emit func(map[string]tensor.Tensor) error) error {
	return f(ctx, in, emit)
}

// The mixed model: onnxgen.MixedFixture's signature and its Go reference.
var (
	mixedSignature = testmodel.MixedSignature
	mixedFake      = predictFunc(testmodel.Mixed)
)

func f32Bytes(vals ...float32) []byte {
	b := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func f64Bytes(vals ...float64) []byte {
	b := make([]byte, 0, 8*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

func i64Bytes(vals ...int64) []byte {
	b := make([]byte, 0, 8*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

// mixedRequest is a two-row request for the mixed model:
//
//	a    = [[1, -2, 0.5, 3], [-1, 2, 0, 4]]
//	b    = [[1, 2, 3, 4], [10, 20, 30, 40]]
//	flag = [[true], [false]]
func mixedRequest(id string) *pb.ModelInferRequest {
	return &pb.ModelInferRequest{
		ModelName: "mixed",
		Id:        id,
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "a", Datatype: "FP32", Shape: []int64{2, 4}},
			{Name: "b", Datatype: "INT64", Shape: []int64{2, 4}},
			{Name: "flag", Datatype: "BOOL", Shape: []int64{2, 1}},
		},
		RawInputContents: [][]byte{
			f32Bytes(1, -2, 0.5, 3, -1, 2, 0, 4),
			i64Bytes(1, 2, 3, 4, 10, 20, 30, 40),
			{1, 0},
		},
	}
}

// mixedWant are the raw outputs for mixedRequest, in signature order.
var mixedWant = map[string][]byte{
	"sum":       f32Bytes(2, 0, 3.5, 7, 9, 22, 30, 44),
	"row_total": i64Bytes(10, 100),
	"positive":  {1, 0, 1, 1, 0, 0, 0, 0},
	"scaled":    f64Bytes(2.5, -5, 1.25, 7.5, -2.5, 5, 0, 10),
}

var mixedWantShapes = map[string][]int64{"sum": {2, 4}, "row_total": {2}, "positive": {2, 4}, "scaled": {2, 4}}
