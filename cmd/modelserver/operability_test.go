package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/modelserver/modelserver/proto/inferencepb"
)

// featuresBody is a one-row predict for the default model.
var featuresBody = mlpBody(16)

// mlpBody is a one-row predict for a built-in MLP with width features.
func mlpBody(width int) string {
	return `{"features": [[` + strings.TrimSuffix(strings.Repeat("0.25, ", width), ", ") + `]]}`
}

func featuresInfer() *pb.ModelInferRequest { return mlpInfer("mlp-classifier", 16) }

// mlpInfer is a one-row ModelInfer for the built-in MLP model of width
// features.
func mlpInfer(model string, width int) *pb.ModelInferRequest {
	return &pb.ModelInferRequest{
		ModelName:        model,
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{1, int64(width)}}},
		RawInputContents: [][]byte{make([]byte, 4*width)},
	}
}

func postWith(ctx context.Context, client *http.Client, url, body string, header http.Header) (int, string, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func wsURL(s *runningServer) string {
	return "ws" + strings.TrimPrefix(s.url, "http") + "/v1/websocket"
}

// TestAPIKeysOnEveryTransport: with keys from the environment and a file,
// every inference route on every transport needs one, and the probes do
// not.
func TestAPIKeysOnEveryTransport(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte("# one key per line\nfile-key-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServerEnv(t, []string{envAPIKeys + "=env-key-1,env-key-2"}, "--api-keys-file", keyFile)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	oipBody := `{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 16], "data": [` + strings.TrimSuffix(strings.Repeat("0, ", 16), ", ") + `]}]}`
	for _, route := range []struct{ path, body string }{
		{"/v1/models/model:predict", featuresBody},
		{"/invocations", featuresBody},
		{"/v2/models/mlp-classifier/infer", oipBody},
	} {
		for _, tt := range []struct {
			authorization string
			want          int
		}{{"", 401}, {"Bearer nope", 401}, {"Bearer env-key-2", 200}, {"Api-Key file-key-1", 200}} {
			code, body, _, err := postWith(ctx, http.DefaultClient, s.url+route.path, route.body, http.Header{"Authorization": {tt.authorization}})
			if err != nil || code != tt.want {
				t.Errorf("POST %s with %q = %d %s %v, want %d", route.path, tt.authorization, code, body, err, tt.want)
			}
		}
	}
	for _, path := range []string{"/", "/v1/models/model", "/metrics", "/v2/health/ready"} {
		resp, err := http.Get(s.url + path)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("GET %s without a key = %v %v, want 200", path, resp, err)
		}
		if err == nil {
			resp.Body.Close()
		}
	}

	if _, resp, err := websocket.DefaultDialer.Dial(wsURL(s), nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Errorf("WebSocket upgrade without a key: %v, %v; want 401", resp, err)
	}
	ws, _, err := websocket.DefaultDialer.Dial(wsURL(s), http.Header{"Authorization": {"Api-Key env-key-1"}})
	if err != nil {
		t.Fatalf("WebSocket with a key: %v", err)
	}
	ws.Close()

	conn := dialGRPC(t, s.grpc)
	client := pb.NewGRPCInferenceServiceClient(conn)
	if _, err := client.ModelInfer(ctx, featuresInfer()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC ModelInfer without a key = %v, want UNAUTHENTICATED", err)
	}
	if _, err := client.ModelInfer(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer file-key-1"), featuresInfer()); err != nil {
		t.Errorf("gRPC ModelInfer with a key = %v", err)
	}
	if h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health without a key = %v, %v; want SERVING", h, err)
	}
	if strings.Contains(s.stderr.String(), "env-key-1") || strings.Contains(s.stderr.String(), "file-key-1") {
		t.Error("a key appears in the log")
	}
}

// logLines parses every stderr line as JSON.
func logLines(t *testing.T, s *runningServer) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.stderr.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
			continue
		}
		lines = append(lines, m)
	}
	return lines
}

// TestRequestIDFollowsThroughLogs: a request id sent by the client comes
// back in the response and names the request's JSON access log line, on
// HTTP and gRPC.
func TestRequestIDFollowsThroughLogs(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, body, header, err := postWith(ctx, http.DefaultClient, s.url+"/v1/models/model:predict", featuresBody,
		http.Header{"X-Baseten-Request-Id": {"http-request-7"}, "Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
	if err != nil || code != 200 {
		t.Fatalf("predict = %d %s %v", code, body, err)
	}
	if got := header.Get("X-Request-Id"); got != "http-request-7" {
		t.Errorf("X-Request-Id = %q, want the client's id", got)
	}
	var md metadata.MD
	client := pb.NewGRPCInferenceServiceClient(dialGRPC(t, s.grpc))
	if _, err := client.ModelInfer(metadata.AppendToOutgoingContext(ctx, "x-request-id", "grpc-request-8"), featuresInfer(), grpc.Header(&md)); err != nil {
		t.Fatal(err)
	}
	if got := md.Get("x-request-id"); len(got) != 1 || got[0] != "grpc-request-8" {
		t.Errorf("gRPC x-request-id header = %q, want the client's id", got)
	}

	// stderr reaches the test through a pipe, maybe after the answers.
	waitForLog(t, s, `"request_id":"http-request-7"`)
	waitForLog(t, s, `"request_id":"grpc-request-8"`)
	var httpLine, grpcLine map[string]any
	for _, line := range logLines(t, s) {
		switch line["request_id"] {
		case "http-request-7":
			httpLine = line
		case "grpc-request-8":
			grpcLine = line
		}
		for _, key := range []string{"time", "level", "msg"} {
			if _, ok := line[key]; !ok {
				t.Errorf("log line lacks %s: %v", key, line)
			}
		}
	}
	for key, want := range map[string]any{"msg": "Handled request", "route": "predict", "status": 200.0, "model": "mlp-classifier",
		"batch_size": 1.0, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"} {
		if httpLine[key] != want {
			t.Errorf("HTTP access log %s = %v, want %v (line %v)", key, httpLine[key], want, httpLine)
		}
	}
	if _, ok := httpLine["queue_time"]; !ok {
		t.Errorf("HTTP access log lacks queue_time: %v", httpLine)
	}
	if grpcLine["msg"] != "Handled gRPC request" || grpcLine["code"] != "OK" {
		t.Errorf("gRPC access log line %v", grpcLine)
	}
	if strings.Contains(s.stderr.String(), "0.25") {
		t.Error("the log holds the request body")
	}
}

// TestSlowHeaderClientIsCutOff: a client that sends its headers a byte at a
// time is disconnected after --read-header-timeout, and others are served.
func TestSlowHeaderClientIsCutOff(t *testing.T) {
	s := startServer(t, "--read-header-timeout", "1s")
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan time.Time, 1)
	go func() {
		io.Copy(io.Discard, conn) // returns when the server closes the connection
		closed <- time.Now()
	}()
	start := time.Now()
	header := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)
	for i := 0; ; i++ {
		select {
		case at := <-closed:
			if took := at.Sub(start); took < 900*time.Millisecond {
				t.Errorf("cut off after %v, before the 1 s timeout", took)
			}
			if resp, err := http.Get(s.url + "/"); err != nil || resp.StatusCode != 200 {
				t.Errorf("liveness after the slow client: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > 15*time.Second {
			t.Fatal("slow-header client still connected after 15 s")
		}
		conn.Write([]byte{header[i%len(header)]})
	}
}

// TestSilentGRPCClientIsCutOff: a client that connects to the gRPC port and
// never sends the HTTP/2 preface is disconnected after
// --read-header-timeout.
func TestSilentGRPCClientIsCutOff(t *testing.T) {
	s := startServer(t, "--read-header-timeout", "1s")
	conn, err := net.Dial("tcp", s.grpc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetReadDeadline(start.Add(15 * time.Second))
	_, err = io.Copy(io.Discard, conn)
	if took := time.Since(start); err != nil || took < 900*time.Millisecond {
		t.Errorf("silent gRPC client: connection ended after %v with %v; want the server to close it after 1 s", took, err)
	}
}

// stuckUpload starts a POST whose body never completes, which keeps a
// request in flight for as long as the server lets it.
func stuckUpload(t *testing.T, s *runningServer) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /v1/models/model:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"features\": ")
	time.Sleep(200 * time.Millisecond) // let the server start reading the body
	return conn
}

// waitForLog waits until the log holds want.
func waitForLog(t *testing.T, s *runningServer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.stderr.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %s: %s", want, s.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func exitCode(t *testing.T, s *runningServer, within time.Duration) int {
	t.Helper()
	select {
	case <-s.exited:
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("modelserver still running %v after the signal", within)
		return -1
	}
}

// TestGraceRunsOutExitsZero: a request that outlives the grace period is
// cut off and the process still exits 0.
func TestGraceRunsOutExitsZero(t *testing.T) {
	s := startServer(t, "--shutdown-grace", "1s")
	stuckUpload(t, s)
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, s, 15*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0; log: %s", code, s.stderr.String())
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("exited after %v, before the 1 s grace period", took)
	}
}

// TestSecondSignalExitsAtOnce: while a shutdown waits for a request, a
// second signal ends the process at once.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	s := startServer(t, "--shutdown-grace", "60s")
	stuckUpload(t, s)
	s.cmd.Process.Signal(syscall.SIGTERM)
	waitForLog(t, s, `"msg":"shutting down"`)
	select {
	case <-s.exited:
		t.Fatalf("exited on the first signal with a request in flight: %s", s.stderr.String())
	case <-time.After(300 * time.Millisecond):
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, s, 5*time.Second); code != 128+int(syscall.SIGTERM) {
		t.Errorf("exit code %d, want %d", code, 128+int(syscall.SIGTERM))
	}
}

// outcomes counts what clients saw.
type outcomes struct {
	mu       sync.Mutex
	ok       map[string]int
	explicit map[string]int
	bad      []string
}

func (o *outcomes) add(transport string, ok bool, badReason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case badReason != "":
		o.bad = append(o.bad, transport+": "+badReason)
	case ok:
		o.ok[transport]++
	default:
		o.explicit[transport]++
	}
}

// TestShutdownUnderLoad sends predicts continuously over HTTP, gRPC (unary
// and streams) and WebSocket, and SIGTERMs the server mid-flight. Every
// request must succeed or get an explicit refusal (503, UNAVAILABLE, close
// 1001/1013, or a refused connection once the signal is sent); none may
// hang, every 200 the server logged must have reached its client, and the
// process must exit 0.
func TestShutdownUnderLoad(t *testing.T) {
	// mlp-large takes milliseconds per batch, so at the signal requests
	// are both running and queued.
	s := startServer(t, "--shutdown-grace", "20s", "--model", "mlp-large")
	body, infer := mlpBody(2048), func() *pb.ModelInferRequest { return mlpInfer("mlp-large", 2048) }
	var signalled atomic.Bool
	o := &outcomes{ok: map[string]int{}, explicit: map[string]int{}}
	var wg sync.WaitGroup
	deadline := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 30*time.Second)
	}
	// afterSignal classifies a connection-level error: fine once the
	// server was told to stop (a refused or closed connection is explicit
	// and nothing was accepted), a failure before.
	afterSignal := func(transport string, err error) {
		if errors.Is(err, context.DeadlineExceeded) {
			o.add(transport, false, "hung: "+err.Error())
		} else if signalled.Load() {
			o.add(transport, false, "")
		} else {
			o.add(transport, false, "error before the signal: "+err.Error())
		}
	}

	for range 8 {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for {
				ctx, cancel := deadline()
				code, body, _, err := postWith(ctx, client, s.url+"/v1/models/model:predict", body, nil)
				cancel()
				switch {
				case err != nil:
					afterSignal("http", err)
					return
				case code == 200:
					o.add("http", true, "")
				case code == 503 && strings.Contains(body, "shutting down"):
					o.add("http", false, "")
				default:
					o.add("http", false, fmt.Sprintf("status %d %s", code, body))
					return
				}
			}
		})
	}
	conn := dialGRPC(t, s.grpc)
	client := pb.NewGRPCInferenceServiceClient(conn)
	for range 4 {
		wg.Go(func() {
			for {
				ctx, cancel := deadline()
				_, err := client.ModelInfer(ctx, infer())
				cancel()
				switch status.Code(err) {
				case codes.OK:
					o.add("grpc", true, "")
				case codes.Unavailable:
					o.add("grpc", false, "")
					if signalled.Load() {
						return
					}
				default:
					o.add("grpc", false, err.Error())
					return
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			ctx, cancel := deadline()
			defer cancel()
			stream, err := client.ModelStreamInfer(ctx)
			if err != nil {
				afterSignal("grpc-stream", err)
				return
			}
			for {
				if err := stream.Send(infer()); err != nil {
					break // the stream is over: Recv says how
				}
				resp, err := stream.Recv()
				switch {
				case err != nil && status.Code(err) == codes.Unavailable:
					o.add("grpc-stream", false, "")
					return
				case err != nil:
					o.add("grpc-stream", false, err.Error())
					return
				case resp.ErrorMessage == "":
					o.add("grpc-stream", true, "")
				case strings.HasPrefix(resp.ErrorMessage, "Unavailable"):
					o.add("grpc-stream", false, "")
				default:
					o.add("grpc-stream", false, resp.ErrorMessage)
					return
				}
			}
			if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
				o.add("grpc-stream", false, fmt.Sprintf("stream ended with %v", err))
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			ws, resp, err := websocket.DefaultDialer.Dial(wsURL(s), nil)
			if err != nil {
				if resp != nil && resp.StatusCode != 503 {
					o.add("ws", false, fmt.Sprintf("upgrade refused with %d", resp.StatusCode))
				} else {
					afterSignal("ws", err)
				}
				return
			}
			defer ws.Close()
			for {
				ws.SetReadDeadline(time.Now().Add(30 * time.Second))
				if err := ws.WriteMessage(websocket.TextMessage, []byte(body)); err != nil {
					afterSignal("ws", err)
					return
				}
				_, msg, err := ws.ReadMessage()
				switch {
				case websocket.IsCloseError(err, websocket.CloseGoingAway, websocket.CloseTryAgainLater):
					o.add("ws", false, "")
					return
				case err != nil:
					o.add("ws", false, err.Error())
					return
				case strings.Contains(string(msg), "probabilities"):
					o.add("ws", true, "")
				default:
					o.add("ws", false, "answer "+string(msg))
					return
				}
			}
		})
	}

	time.Sleep(time.Second)
	signalled.Store(true)
	signalledAt := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	code := exitCode(t, s, 25*time.Second)
	t.Logf("exited %v after SIGTERM", time.Since(signalledAt))
	wg.Wait()
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	for _, b := range o.bad {
		t.Error(b)
	}
	for _, transport := range []string{"http", "grpc", "grpc-stream", "ws"} {
		if o.ok[transport] == 0 {
			t.Errorf("no %s request succeeded", transport)
		}
	}
	t.Logf("succeeded %v, refused explicitly %v", o.ok, o.explicit)

	// Every answer the server logged as sent reached its client.
	served := map[string]int{}
	for _, line := range logLines(t, s) {
		switch {
		case line["msg"] == "Handled request" && line["route"] == "predict" && line["status"] == 200.0:
			served["http"]++
		case line["msg"] == "Handled request" && line["route"] == "predict" && line["status"] != 503.0:
			t.Errorf("HTTP predict logged as %v", line)
		case line["msg"] == "Handled gRPC request" && line["method"] == "/inference.GRPCInferenceService/ModelInfer" && line["code"] == "OK":
			served["grpc"]++
		}
	}
	for _, transport := range []string{"http", "grpc"} {
		if served[transport] != o.ok[transport] {
			t.Errorf("%s: the server answered %d predicts, clients received %d", transport, served[transport], o.ok[transport])
		}
	}
}

// TestOTLPExport: with OTEL_EXPORTER_OTLP_ENDPOINT set, the spans of a
// predict reach an OTLP/HTTP collector, in the client's trace: the server
// span and its queue and execution children.
func TestOTLPExport(t *testing.T) {
	type span struct{ name, trace, id, parent, service string }
	var mu sync.Mutex
	var got []span
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		var req collectortracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(b, &req) != nil {
			http.Error(w, "bad export", 400)
			return
		}
		mu.Lock()
		for _, rs := range req.ResourceSpans {
			var service string
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					got = append(got, span{sp.Name, hex.EncodeToString(sp.TraceId), hex.EncodeToString(sp.SpanId), hex.EncodeToString(sp.ParentSpanId), service})
				}
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	s := startServerEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.URL, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_BSP_SCHEDULE_DELAY=50"})
	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if code, body, _, err := postWith(ctx, http.DefaultClient, s.url+"/v1/models/model:predict", featuresBody,
		http.Header{"Traceparent": {"00-" + traceID + "-" + parentID + "-01"}}); err != nil || code != 200 {
		t.Fatalf("predict = %d %s %v", code, body, err)
	}
	byName := map[string]span{}
	deadline := time.Now().Add(20 * time.Second)
	for len(byName) < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		for _, sp := range got {
			if sp.trace == traceID {
				byName[sp.name] = sp
			}
		}
		mu.Unlock()
	}
	server, ok := byName["POST predict"]
	if !ok || server.parent != parentID || server.service != "modelserver" {
		t.Fatalf("server span %+v (of %v), want parent %s, service modelserver", server, byName, parentID)
	}
	for _, name := range []string{"queue", "execute"} {
		if sp := byName[name]; sp.parent != server.id {
			t.Errorf("%s span %+v, want a child of the server span %s", name, sp, server.id)
		}
	}
}
