package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/modelserver/modelserver/proto/inferencepb"
)

// TestSameAnswerOnEveryTransport sends one input to the default model over
// Truss HTTP, Open Inference Protocol HTTP, gRPC and WebSocket, and expects
// the same probabilities, bit for bit, from each.
func TestSameAnswerOnEveryTransport(t *testing.T) {
	s := startServer(t)
	features := make([]byte, 0, 2*16*4)
	for i := range 32 {
		features = binary.LittleEndian.AppendUint32(features, math.Float32bits(float32(i%7)/3-1))
	}
	b64 := base64.StdEncoding.EncodeToString(features)

	answers := map[string][]byte{}

	// Truss HTTP, NumpyArrayField JSON.
	body := fmt.Sprintf(`{"features": {"data_b64": %q, "shape": [2, 16], "dtype": "float32"}}`, b64)
	var truss map[string]struct {
		Data string `json:"data_b64"`
	}
	postJSON(t, s.url+"/v1/models/model:predict", body, &truss)
	answers["truss-http"] = mustB64(t, truss["probabilities"].Data)

	// OIP HTTP with the binary output extension.
	var infer struct {
		Outputs []struct {
			Name string    `json:"name"`
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	vals := make([]string, 32)
	for i := range vals {
		vals[i] = fmt.Sprint(math.Float32frombits(binary.LittleEndian.Uint32(features[4*i:])))
	}
	postJSON(t, s.url+"/v2/models/mlp-classifier/infer",
		`{"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 16], "data": [`+strings.Join(vals, ", ")+`]}], "outputs": [{"name": "probabilities"}]}`, &infer)
	if len(infer.Outputs) != 1 {
		t.Fatalf("OIP outputs %+v", infer.Outputs)
	}
	var oipBytes []byte
	for _, v := range infer.Outputs[0].Data {
		oipBytes = binary.LittleEndian.AppendUint32(oipBytes, math.Float32bits(float32(v)))
	}
	answers["oip-http"] = oipBytes

	// gRPC ModelInfer with raw contents.
	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := pb.NewGRPCInferenceServiceClient(conn).ModelInfer(ctx, &pb.ModelInferRequest{
		ModelName:        "mlp-classifier",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{2, 16}}},
		Outputs:          []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "probabilities"}},
		RawInputContents: [][]byte{features},
	})
	if err != nil {
		t.Fatal(err)
	}
	answers["grpc"] = resp.GetRawOutputContents()[0]

	// WebSocket, JSON text frame.
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.url, "http")+"/v1/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(body)); err != nil {
		t.Fatal(err)
	}
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var wsOut map[string]struct {
		Data string `json:"data_b64"`
	}
	if err := json.Unmarshal(msg, &wsOut); err != nil {
		t.Fatal(err)
	}
	answers["websocket"] = mustB64(t, wsOut["probabilities"].Data)

	want := answers["truss-http"]
	if len(want) != 2*4*4 {
		t.Fatalf("truss-http probabilities have %d bytes, want 32", len(want))
	}
	for transport, got := range answers {
		if !bytes.Equal(got, want) {
			t.Errorf("%s answered % x, truss-http % x", transport, got, want)
		}
	}
}

func postJSON(t *testing.T, url, body string, out any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e bytes.Buffer
		e.ReadFrom(resp.Body)
		t.Fatalf("POST %s = %d %s", url, resp.StatusCode, e.String())
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
