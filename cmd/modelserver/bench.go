package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/codec"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/grpcserver"
	"github.com/modelserver/modelserver/models"
	"github.com/modelserver/modelserver/oip"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
	"github.com/modelserver/modelserver/server"
	"github.com/modelserver/modelserver/tensor"
)

// benchFlags configure `modelserver bench`.
type benchFlags struct {
	model              string
	ortLib             string
	concurrency        []int
	duration           time.Duration
	maxBatchSize       int
	maxQueueDelay      time.Duration
	threads            int
	transports         []string
	concurrencyPredict int
	cpuProfile         string
}

// runBench measures the served HTTP+msgpack path on loopback next to direct
// ONNX Runtime calls of the same model, in the same process and run, so the
// ratios hold on a noisy machine.
func runBench(args []string, stdout, stderr io.Writer) error {
	var f benchFlags
	var conc, transports string
	fs := flag.NewFlagSet("modelserver bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.model, "model", models.DefaultModel, "built-in model name or model directory; its first input gets one row per request")
	fs.StringVar(&f.ortLib, "onnxruntime-lib", "", "path of libonnxruntime.so (default as for serving)")
	fs.StringVar(&conc, "concurrency", "1,64", "comma-separated client counts")
	fs.StringVar(&transports, "transports", "http", "comma-separated transports to measure: http, ws, grpc; the ratios use the first")
	fs.DurationVar(&f.duration, "duration", 5*time.Second, "length of each measurement")
	fs.IntVar(&f.maxBatchSize, "max-batch-size", 32, "rows per batch with batching on")
	fs.DurationVar(&f.maxQueueDelay, "max-queue-delay", time.Millisecond, "longest wait for a batch to fill")
	fs.IntVar(&f.threads, "intra-op-threads", 0, "ONNX Runtime threads per operator (default: one per core)")
	fs.IntVar(&f.concurrencyPredict, "predict-concurrency", 1, "model executions in flight when served")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a Go CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, c := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("--concurrency: %q is not a positive integer", c)
		}
		f.concurrency = append(f.concurrency, n)
	}
	for _, tr := range strings.Split(transports, ",") {
		tr = strings.TrimSpace(tr)
		if _, ok := transportLabels[tr]; !ok {
			return fmt.Errorf("--transports: unknown transport %q (want http, ws or grpc)", tr)
		}
		f.transports = append(f.transports, tr)
	}
	libPath, err := ortLibraryPath(f.ortLib)
	if err != nil {
		return err
	}
	if err := engine.InitONNXRuntime(libPath); err != nil {
		return err
	}
	src, err := models.Resolve(f.model)
	if err != nil {
		return err
	}
	m, err := loadONNX(src, engine.ONNXOptions{IntraOpThreads: f.threads})
	if err != nil {
		return err
	}
	defer m.Close()
	if f.cpuProfile != "" {
		out, err := os.Create(f.cpuProfile)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "path\tconcurrency\tbatch\tp50 ms\tp99 ms\treq/s\trows/s\trows/exec\tmodel busy\t\n")
	direct := map[int]result{}
	for _, rows := range []int{1, f.maxBatchSize} {
		r, err := benchDirect(m, rows, f.duration)
		if err != nil {
			return err
		}
		direct[rows] = r
		fmt.Fprintf(w, "direct Run\t1\t%d\t%s\n", rows, r)
	}
	served := map[string]result{}
	for _, transport := range f.transports {
		for _, batched := range []bool{false, true} {
			for _, c := range f.concurrency {
				mbs := 0
				if batched {
					mbs = f.maxBatchSize
				}
				r, err := benchServed(m, transport, c, mbs, f.concurrencyPredict, f.maxQueueDelay, f.duration)
				if err != nil {
					return err
				}
				label := transportLabels[transport] + ", batching off"
				if batched {
					label = transportLabels[transport] + ", batching on"
				}
				if transport == f.transports[0] {
					served[fmt.Sprint(batched, c)] = r
				}
				fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", label, c, mbs, r)
			}
		}
	}
	w.Flush()

	d1, dN := direct[1], direct[f.maxBatchSize]
	fmt.Fprintf(stdout, "\nratios over %s:\n", f.transports[0])
	if r, ok := served[fmt.Sprint(false, 1)]; ok {
		fmt.Fprintf(stdout, "overhead at concurrency 1: served p50 - direct p50 = %.0f µs\n", float64(r.p50-d1.p50)/1e3)
	}
	for _, c := range f.concurrency {
		on, off := served[fmt.Sprint(true, c)], served[fmt.Sprint(false, c)]
		if c < f.maxBatchSize {
			continue
		}
		fmt.Fprintf(stdout, "concurrency %d: served batched rows/s = %.0f%% of direct batch-%d rows/s\n", c, 100*on.rowsPerSec/dN.rowsPerSec, f.maxBatchSize)
		directGain, servedGain := dN.rowsPerSec/d1.rowsPerSec, on.rowsPerSec/off.rowsPerSec
		fmt.Fprintf(stdout, "concurrency %d: batching gain served %.2fx, direct %.2fx (served = %.0f%% of direct)\n", c, servedGain, directGain, 100*servedGain/directGain)
	}
	return nil
}

type result struct {
	p50, p99   time.Duration
	reqPerSec  float64
	rowsPerSec float64
	// rowsPerExec and busy (the share of wall time the model was
	// executing) are known for served runs only.
	rowsPerExec, busy float64
}

func (r result) String() string {
	return fmt.Sprintf("%.3f\t%.3f\t%.0f\t%.0f\t%.1f\t%.0f%%\t", r.p50.Seconds()*1e3, r.p99.Seconds()*1e3, r.reqPerSec, r.rowsPerSec, r.rowsPerExec, 100*r.busy)
}

func summarize(lat []time.Duration, rowsPerReq int, elapsed time.Duration) result {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		return result{}
	}
	rps := float64(len(lat)) / elapsed.Seconds()
	return result{p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], reqPerSec: rps, rowsPerSec: rps * float64(rowsPerReq)}
}

// benchInputs makes random inputs with the given rows for every dynamic
// first dimension (other dynamic dimensions get 1). Values are ordinary
// numbers of each dtype: random bytes would make denormal floats, which
// slow CPU arithmetic down by orders of magnitude.
func benchInputs(sig engine.Signature, rows int) (map[string]tensor.Tensor, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := map[string]tensor.Tensor{}
	for _, spec := range sig.Inputs {
		shape := make([]int64, len(spec.Shape))
		for i, d := range spec.Shape {
			switch {
			case d != engine.DynamicDim:
				shape[i] = d
			case i == 0:
				shape[i] = int64(rows)
			default:
				shape[i] = 1
			}
		}
		size, err := tensor.ByteSize(spec.DType, shape)
		if err != nil {
			return nil, err
		}
		data := make([]byte, size)
		w := spec.DType.Size()
		for i := 0; i < size; i += w {
			e := data[i : i+w]
			switch spec.DType {
			case tensor.Float32:
				binary.LittleEndian.PutUint32(e, math.Float32bits(float32(rng.NormFloat64())))
			case tensor.Float64:
				binary.LittleEndian.PutUint64(e, math.Float64bits(rng.NormFloat64()))
			case tensor.Float16:
				binary.LittleEndian.PutUint16(e, 0x3c00) // 1.0
			case tensor.BFloat16:
				binary.LittleEndian.PutUint16(e, 0x3f80) // 1.0
			default:
				e[0] = byte(rng.IntN(2)) // 0 or 1: valid for every integer type and bool
			}
		}
		inputs[spec.Name] = tensor.Tensor{DType: spec.DType, Shape: shape, Data: data}
	}
	return inputs, nil
}

func benchDirect(m engine.Model, rows int, d time.Duration) (result, error) {
	inputs, err := benchInputs(m.Signature(), rows)
	if err != nil {
		return result{}, err
	}
	var lat []time.Duration
	start := time.Now()
	for time.Since(start) < d {
		t := time.Now()
		if _, err := m.Run(context.Background(), inputs); err != nil {
			return result{}, err
		}
		lat = append(lat, time.Since(t))
	}
	return summarize(lat, rows, time.Since(start)), nil
}

// transportLabels name each transport and its encoding in the table.
var transportLabels = map[string]string{"http": "HTTP msgpack", "ws": "WebSocket msgpack", "grpc": "gRPC raw contents"}

// caller sends one predict and waits for its answer.
type caller func() error

// benchTarget is what the clients of one measurement call.
type benchTarget struct {
	httpAddr, grpcAddr string
	body               []byte // msgpack predict body
	grpcRequest        *pb.ModelInferRequest
	httpClient         *http.Client
}

// newCaller returns a caller of the given transport for one client
// goroutine, and a function that releases its connection.
func newCaller(transport string, tg benchTarget) (caller, func(), error) {
	addr, body, httpClient := tg.httpAddr, tg.body, tg.httpClient
	switch transport {
	case "grpc":
		conn, err := grpc.NewClient(tg.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, err
		}
		client := pb.NewGRPCInferenceServiceClient(conn)
		call := func() error {
			_, err := client.ModelInfer(context.Background(), tg.grpcRequest)
			return err
		}
		return call, func() { conn.Close() }, nil
	case "http":
		url := "http://" + addr + "/v1/models/model:predict"
		return func() error { return post(httpClient, url, body) }, func() {}, nil
	case "ws":
		conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/websocket", nil)
		if err != nil {
			return nil, nil, err
		}
		call := func() error {
			if err := conn.WriteMessage(websocket.BinaryMessage, body); err != nil {
				return err
			}
			_, _, err := conn.ReadMessage()
			return err
		}
		return call, func() { conn.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown transport %q (want http, ws or grpc)", transport)
}

func benchServed(m engine.Model, transport string, clients, maxBatch, predictConcurrency int, delay, d time.Duration) (result, error) {
	var execs batchCounter
	b := batching.New(m, batching.WithMaxBatchSize(maxBatch), batching.WithMaxQueueDelay(delay),
		batching.WithMaxQueueSize(4*clients+16), batching.WithPredictConcurrency(predictConcurrency),
		batching.WithObserver(&execs))
	defer b.Close()
	srv := server.New(server.Options{Logger: slog.New(slog.DiscardHandler)})
	srv.SetReady(server.Model{Signature: m.Signature(), Predictor: b})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	defer hs.Close()
	gs := grpcserver.New(grpcserver.Options{Logger: slog.New(slog.DiscardHandler)})
	gs.SetReady(grpcserver.Model{Name: "model", Signature: m.Signature(), Predictor: b})
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	go gs.Serve(gln)
	defer gs.Stop()

	inputs, err := benchInputs(m.Signature(), 1)
	if err != nil {
		return result{}, err
	}
	order := make([]string, 0, len(inputs))
	for _, spec := range m.Signature().Inputs {
		order = append(order, spec.Name)
	}
	body, err := codec.EncodeTensors(inputs, order, codec.FormatMsgpack)
	if err != nil {
		return result{}, err
	}
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer httpClient.CloseIdleConnections()
	target := benchTarget{httpAddr: ln.Addr().String(), grpcAddr: gln.Addr().String(), body: body,
		grpcRequest: grpcRequest(m.Signature(), inputs), httpClient: httpClient}

	var mu sync.Mutex
	var all []time.Duration
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		firstErr = errors.Join(firstErr, err)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call, closeConn, err := newCaller(transport, target)
			if err != nil {
				fail(err)
				return
			}
			defer closeConn()
			var lat []time.Duration
			for time.Since(start) < d {
				t := time.Now()
				if err := call(); err != nil {
					fail(err)
					return
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return result{}, firstErr
	}
	r := summarize(all, 1, time.Since(start))
	r.rowsPerExec, r.busy = execs.meanRows(), execs.busy()/time.Since(start).Seconds()
	return r, nil
}

// batchCounter records the executions of one measurement.
type batchCounter struct {
	batching.NopObserver
	mu          sync.Mutex
	execs, rows int
	execTime    time.Duration
}

func (c *batchCounter) BatchExecuted(rows, _ int, exec time.Duration, _ error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.execs, c.rows, c.execTime = c.execs+1, c.rows+rows, c.execTime+exec
}

func (c *batchCounter) meanRows() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.execs == 0 {
		return 0
	}
	return float64(c.rows) / float64(c.execs)
}

// busy is the total execution time in seconds.
func (c *batchCounter) busy() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.execTime.Seconds()
}

// grpcRequest is a ModelInfer request carrying inputs as raw contents.
func grpcRequest(sig engine.Signature, inputs map[string]tensor.Tensor) *pb.ModelInferRequest {
	req := &pb.ModelInferRequest{ModelName: "model"}
	for _, spec := range sig.Inputs {
		t := inputs[spec.Name]
		datatype, _ := oip.Datatype(t.DType)
		req.Inputs = append(req.Inputs, &pb.ModelInferRequest_InferInputTensor{Name: spec.Name, Datatype: datatype, Shape: t.Shape})
		req.RawInputContents = append(req.RawInputContents, t.Data)
	}
	return req
}

func post(client *http.Client, url string, body []byte) error {
	resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("predict answered %s", resp.Status)
	}
	return nil
}
