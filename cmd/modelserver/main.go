// Command modelserver serves one model over Truss-compatible HTTP.
//
//	modelserver [--model NAME|DIR] [--device auto|cpu|cuda|cuda:N] [--host H] [--port P] [--onnxruntime-lib PATH] ...
//	modelserver bench [--model NAME|DIR] [--concurrency 1,64] [--duration 5s] ...
//	modelserver bench-llm --model DIR [--concurrency 1,4,16] [--tokens N] [--prompt-tokens N] [--repeat N]
//	modelserver gen-phi3 --out DIR [--preset tiny|mid] [--precision fp32|int4] [--seed N] [--context N]
//
// It is the only package that reads flags and the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/term"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/config"
	"github.com/modelserver/modelserver/cuda"
	"github.com/modelserver/modelserver/cuda/cudametrics"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/grpcserver"
	"github.com/modelserver/modelserver/llm"
	"github.com/modelserver/modelserver/models"
	"github.com/modelserver/modelserver/oip"
	"github.com/modelserver/modelserver/openai"
	"github.com/modelserver/modelserver/server"
	"github.com/modelserver/modelserver/telemetry"
)

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		err = runBench(os.Args[2:], os.Stdout, os.Stderr)
	} else if len(os.Args) > 1 && os.Args[1] == "bench-llm" {
		err = runBenchLLM(os.Args[2:], os.Stdout, os.Stderr)
	} else if len(os.Args) > 1 && os.Args[1] == "gen-phi3" {
		err = runGenPhi3(os.Args[2:], os.Stdout, os.Stderr)
	} else {
		err = run(os.Args[1:], os.Stderr)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "modelserver: %v\n", err)
		os.Exit(1)
	}
}

type flags struct {
	model              string
	device             cuda.Request
	host               string
	port               int
	ortLib             string
	maxRequestBytes    int64
	predictConcurrency int
	predictTimeout     time.Duration
	intraOpThreads     int
	logFormat          string
	shutdownGrace      time.Duration
	wsMaxMessageBytes  int64
	grpcPort           int
	limits             serverLimits
	apiKeysFile        string
	openRoutes         string
	grpcOpenMethods    string
	llm                llmFlags
}

func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("modelserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.model, "model", models.DefaultModel, "built-in model name ("+strings.Join(models.BuiltinNames(), ", ")+"), an LLM ("+models.Phi3+"), a directory holding config.yaml and model.onnx, or an onnxruntime-genai LLM directory (genai_config.json)")
	fs.Func("device", "where to run the model: auto (the first GPU, else the CPU; the default), cpu, cuda (the first GPU) or cuda:N", func(s string) error {
		var err error
		f.device, err = cuda.ParseDevice(s)
		return err
	})
	fs.StringVar(&f.host, "host", "0.0.0.0", "address to listen on")
	fs.IntVar(&f.port, "port", 8080, "HTTP port")
	fs.IntVar(&f.grpcPort, "grpc-port", 8081, "gRPC port (Open Inference Protocol); 0 disables gRPC")
	fs.StringVar(&f.ortLib, "onnxruntime-lib", "", "path of libonnxruntime.so (default: $ONNXRUNTIME_LIB, then /usr/local/lib, then ~/.local/lib)")
	fs.Int64Var(&f.maxRequestBytes, "max-request-bytes", 0, "largest request body in bytes (default: config.yaml runtime.max_request_bytes, 100 MiB)")
	fs.IntVar(&f.predictConcurrency, "predict-concurrency", 0, "model executions in flight (default: config.yaml runtime.predict_concurrency, 1)")
	fs.DurationVar(&f.predictTimeout, "predict-timeout", 0, "queue plus execution deadline per request (default: config.yaml runtime.predict_timeout_s, 600s)")
	fs.IntVar(&f.intraOpThreads, "intra-op-threads", 0, "ONNX Runtime threads per operator (default: one per core)")
	fs.StringVar(&f.logFormat, "log-format", "auto", "log format: json, text, or auto (text when stderr is a terminal, else json)")
	fs.Int64Var(&f.wsMaxMessageBytes, "websocket-max-message-bytes", server.DefaultWebSocketMaxMessageBytes, "largest WebSocket message; larger ones close the connection with 1009")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 30*time.Second, "time in-flight requests get to finish after SIGTERM or SIGINT; a second signal exits at once")
	fs.StringVar(&f.apiKeysFile, "api-keys-file", "", "file of API keys (one per line or comma-separated; # comments); with $"+envAPIKeys+" they are required on every route but --open-routes")
	fs.StringVar(&f.openRoutes, "open-routes", strings.Join(server.DefaultOpenRoutes, ","), "comma-separated HTTP routes (ServeMux patterns) served without an API key and while draining; empty protects every route")
	fs.StringVar(&f.grpcOpenMethods, "grpc-open-methods", strings.Join(grpcserver.DefaultOpenMethods, ","), "comma-separated gRPC methods served without an API key; empty protects every method")
	f.limits.register(fs)
	f.llm.register(fs)
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return f, nil
}

// ortLibraryPath picks the runtime library: the flag, then ONNXRUNTIME_LIB,
// then the places scripts/install-onnxruntime.sh installs to.
func ortLibraryPath(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if env := os.Getenv("ONNXRUNTIME_LIB"); env != "" {
		return env, nil
	}
	candidates := []string{"/usr/local/lib/libonnxruntime.so"}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".local/lib/libonnxruntime.so"))
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("ONNX Runtime library not found in %s; install it with scripts/install-onnxruntime.sh, or point --onnxruntime-lib or ONNXRUNTIME_LIB at libonnxruntime.so",
		strings.Join(candidates, ", "))
}

// newLogger returns the process logger: JSON lines, or text for people
// (auto picks text when w is a terminal), each line stamped with its
// request's request_id and trace.
func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	switch format {
	case "json":
		return slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(w, nil))), nil
	case "text":
		return slog.New(telemetry.NewLogHandler(slog.NewTextHandler(w, nil))), nil
	}
	return nil, fmt.Errorf("--log-format must be auto, json or text, not %q", format)
}

func run(args []string, stderr io.Writer) error {
	f, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(f.logFormat, stderr)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	routeGRPCLogs(log)
	keys, err := loadAPIKeys(f.apiKeysFile, os.Getenv(envAPIKeys))
	if err != nil {
		return err
	}
	openRoutes, openMethods := splitList(f.openRoutes), splitList(f.grpcOpenMethods)
	if err := server.CheckRoutePatterns(openRoutes); err != nil {
		return fmt.Errorf("--open-routes: %w", err)
	}
	if err := f.limits.check(); err != nil {
		return err
	}
	stopTracing, err := startTracing(log)
	if err != nil {
		return err
	}
	defer stopTracing()
	libPath, err := ortLibraryPath(f.ortLib)
	if err != nil {
		return err
	}
	if err := engine.InitONNXRuntime(libPath); err != nil {
		return fmt.Errorf("%v; install a working one with scripts/install-onnxruntime.sh, or point --onnxruntime-lib or ONNXRUNTIME_LIB at libonnxruntime.so", err)
	}
	var src *models.Source
	if isLLM(f.model) {
		src, err = llmSource(f)
	} else {
		src, err = models.Resolve(f.model)
	}
	if err != nil {
		return err
	}
	if len(src.Config.UnknownKeys) > 0 {
		log.Warn("config.yaml has keys modelserver does not know; they are ignored", "keys", src.Config.UnknownKeys)
	}
	placement, exec, worker, err := chooseDevice(f.device, src, log)
	if err != nil {
		return err
	}
	if worker != nil {
		defer worker.Stop()
	}
	accel, _ := cuda.ParseAccelerator(src.Config.Resources.Accelerator) // checked by chooseDevice
	rt := src.Config.Runtime
	if f.maxRequestBytes > 0 {
		rt.MaxRequestBytes = f.maxRequestBytes
	}
	if f.predictConcurrency > 0 {
		rt.PredictConcurrency = f.predictConcurrency
	}
	if f.predictTimeout > 0 {
		rt.PredictTimeoutS = f.predictTimeout.Seconds()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if worker != nil {
		reg.MustRegister(cudametrics.New(accel, worker))
	} else {
		reg.MustRegister(cudametrics.New(accel))
	}
	predictTimeout := time.Duration(rt.PredictTimeoutS * float64(time.Second))
	oipHandler := oip.NewHandler(oip.HandlerOptions{MaxRequestBytes: rt.MaxRequestBytes, PredictTimeout: predictTimeout, Logger: log})
	routes := map[string]http.Handler{"/v2": oipHandler, "/v2/": oipHandler}
	var llmAPI *openai.API
	if src.Kind == models.KindLLM {
		// An LLM speaks text, not tensors: the OpenAI API, Truss predict and
		// WebSocket through openai, and no Open Inference Protocol.
		llmAPI = openai.New(openai.Options{Registerer: reg, Logger: log, MaxRequestBytes: rt.MaxRequestBytes, WebSocketMaxMessageBytes: f.wsMaxMessageBytes})
		routes = llmAPI.Routes()
		routes["GET /v1/websocket"] = llmAPI.WebSocketHandler()
		if f.grpcPort > 0 {
			log.Info("gRPC is off for LLMs: the Open Inference Protocol carries tensors; use the OpenAI API", "grpc_port", f.grpcPort)
			f.grpcPort = 0
		}
	}
	srv := server.New(server.Options{
		MaxRequestBytes:          rt.MaxRequestBytes,
		PredictTimeout:           predictTimeout,
		StreamingReadTimeout:     time.Duration(rt.StreamingReadTimeout) * time.Second,
		WebSocketMaxMessageBytes: f.wsMaxMessageBytes,
		Logger:                   log,
		ModelName:                src.Config.ModelName,
		APIKeys:                  keys,
		OpenRoutes:               openRoutes,
		Registerer:               reg,
		Gatherer:                 reg,
		Routes:                   routes,
	})
	ln, err := f.limits.listen(net.JoinHostPort(f.host, strconv.Itoa(f.port)))
	if err != nil {
		return err
	}
	var grpcSrv *grpcserver.Server
	var grpcLn net.Listener
	if f.grpcPort > 0 {
		if grpcLn, err = f.limits.listen(net.JoinHostPort(f.host, strconv.Itoa(f.grpcPort))); err != nil {
			ln.Close()
			return err
		}
		grpcSrv = grpcserver.New(grpcserver.Options{
			MaxMessageBytes:      int(rt.MaxRequestBytes),
			PredictTimeout:       predictTimeout,
			Logger:               log,
			APIKeys:              keys,
			OpenMethods:          openMethods,
			MaxConcurrentStreams: uint32(f.limits.grpcMaxConcurrentStreams),
			ConnectionTimeout:    f.limits.readHeaderTimeout,
		})
	}
	httpServer := f.limits.httpServer(srv.Handler(), log)
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	serveErr := make(chan error, 2)
	go func() { serveErr <- httpServer.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "model", src.Name, "onnxruntime", engine.ONNXRuntimeVersion(), "api_keys", keys.Enabled())
	if grpcSrv != nil {
		go func() { serveErr <- grpcSrv.Serve(grpcLn) }()
		log.Info("listening for gRPC", "addr", grpcLn.Addr().String())
	}

	loaded := make(chan loadResult, 1)
	obs := server.NewBatchObserver(reg, log)
	loadCtx, cancelLoad := context.WithCancel(context.Background())
	defer cancelLoad()
	go func() {
		if src.Kind != models.KindLLM {
			loaded <- load(src, f, placement, exec, rt, obs, log)
			return
		}
		e, err := loadLLM(loadCtx, src, f, placement, exec, log)
		if err != nil {
			log.Error("Exception while loading model", "model", src.Name, "error", err)
			loaded <- loadResult{err: err}
			return
		}
		loaded <- loadResult{model: e, llm: e, serving: server.Model{Handler: llmAPI.PredictHandler()}}
	}()
	var model interface{ Close() error }
	var batcher *batching.Batcher
	var sig os.Signal
wait:
	for {
		select {
		case err := <-serveErr:
			return err
		case res := <-loaded:
			if res.err != nil {
				httpServer.Close()
				if grpcSrv != nil {
					grpcSrv.Stop()
				}
				return res.err
			}
			model, batcher = res.model, res.batcher
			if res.llm != nil {
				llmAPI.SetModel(openai.ModelFromEngine(res.llm, src.Config.ModelName))
				srv.SetReady(res.serving)
				loaded = nil
				continue
			}
			srv.SetReady(res.serving)
			name := src.Config.ModelName
			oipHandler.SetReady(oip.Model{Name: name, Signature: res.serving.Signature, Predictor: res.serving.Predictor, Streamer: res.serving.Streamer})
			if grpcSrv != nil {
				grpcSrv.SetReady(grpcserver.Model{Name: name, Signature: res.serving.Signature, Predictor: res.serving.Predictor, Streamer: res.serving.Streamer})
			}
			loaded = nil
		case sig = <-signals:
			cancelLoad()
			break wait
		}
	}
	done := make(chan struct{})
	defer close(done)
	go exitOnSecondSignal(signals, done, log)
	log.Info("shutting down", "signal", sig.String(), "grace", f.shutdownGrace)
	drain(f.shutdownGrace, httpServer, srv, oipHandler, grpcSrv, llmAPI, log)
	if batcher != nil {
		batcher.Close()
	}
	if model != nil {
		model.Close()
	}
	log.Info("shut down")
	return nil
}

type loadResult struct {
	model   interface{ Close() error }
	batcher *batching.Batcher // nil for streaming models and LLMs
	llm     *llm.Engine       // set for LLMs only
	serving server.Model
	err     error
}

// load creates the runtime session, which may take long for big models; the
// server answers 503 on readiness meanwhile.
func load(src *models.Source, f flags, placement cuda.Placement, exec engine.Execution, rt config.Runtime, obs batching.Observer, log *slog.Logger) loadResult {
	start := time.Now()
	log.Info("Executing model.load()...", "model", src.Name)
	opts := engine.ONNXOptions{IntraOpThreads: f.intraOpThreads, Execution: exec}
	m, err := loadONNX(src, opts)
	if errors.Is(err, engine.ErrProviderUnavailable) {
		// auto moves to the CPU; an explicit cuda or cuda:N fails here.
		var ferr error
		if placement, ferr = placement.Fallback(err); ferr != nil {
			log.Error("Exception while loading model", "model", src.Name, "error", ferr)
			return loadResult{err: fmt.Errorf("loading model %s: %w", src.Name, ferr)}
		}
		log.Warn("ONNX Runtime cannot use the GPU; falling back to the CPU", "reason", placement.Reason)
		opts.Execution = engine.Execution{}
		m, err = loadONNX(src, opts)
	}
	if err == nil {
		p := m.Providers()
		log.Info("execution providers", "device", placement.String(), "providers", p.String())
		if p.TensorRTErr != nil {
			log.Warn("TensorRT was asked for but is unavailable; running on CUDA", "error", p.TensorRTErr)
		}
	}
	if err != nil {
		log.Error("Exception while loading model", "model", src.Name, "error", err)
		return loadResult{err: fmt.Errorf("loading model %s: %w", src.Name, err)}
	}
	done := func(res loadResult) loadResult {
		log.Info(fmt.Sprintf("Completed model.load() execution in %d ms", time.Since(start).Milliseconds()), "model", src.Name)
		return res
	}
	if src.Kind == models.KindRecurrentStream {
		rs, err := models.NewRecurrentStream(m)
		if err != nil {
			m.Close()
			return loadResult{err: fmt.Errorf("loading model %s: %w", src.Name, err)}
		}
		limiter := batching.NewStreamLimiter(rs, rt.PredictConcurrency, rt.Batching.MaxQueueSize, obs)
		return done(loadResult{model: rs, serving: server.Model{Signature: rs.Signature(), Streamer: limiter}})
	}
	b := batching.New(m, batchingOptions(rt, obs)...)
	return done(loadResult{model: m, batcher: b, serving: server.Model{Signature: m.Signature(), Predictor: b}})
}

func loadONNX(src *models.Source, opts engine.ONNXOptions) (*engine.ONNXModel, error) {
	if src.ONNXPath != "" {
		return engine.LoadONNXFile(src.ONNXPath, opts)
	}
	return engine.LoadONNXBytes(src.ONNX, opts)
}

// chooseDevice applies --device (cuda.Select) to what cuda.Probe finds,
// reports the inventory and config.yaml's resources.accelerator, and starts
// the chosen GPU's worker, which serves the GPU gauges of /metrics. A
// binary built without the cuda tag finds no GPU, so auto means the CPU
// there and cuda fails; a cuda-tagged one needs the driver library to start
// at all, so it runs where GPUs are meant to be.
func chooseDevice(req cuda.Request, src *models.Source, log *slog.Logger) (cuda.Placement, engine.Execution, *cuda.Worker, error) {
	var inv cuda.Inventory
	var probeErr error
	if req.Explicit && req.Kind == cuda.CPU {
		probeErr = errors.New("not probed: --device cpu")
	} else {
		inv, probeErr = cuda.Probe()
	}
	if probeErr == nil {
		log.Info("CUDA", "driver", cuda.FormatVersion(inv.DriverVersion), "driver_release", inv.DriverRelease,
			"runtime", cuda.FormatVersion(inv.RuntimeVersion), "runtime_library", inv.RuntimeLibrary,
			"built_against", cuda.FormatVersion(inv.HeaderVersion), "gpus", len(inv.Devices))
		for _, d := range inv.Devices {
			log.Info("GPU", "device", d.String(), "uuid", d.UUID, "pci", d.PCIBusID)
		}
	}
	accel, err := cuda.ParseAccelerator(src.Config.Resources.Accelerator)
	if err != nil {
		return cuda.Placement{}, engine.Execution{}, nil, err
	}
	if accel.Type != "" {
		if err := accel.Check(inv.Devices); err != nil {
			log.Warn("resources.accelerator does not match the GPUs found", "accelerator", accel.String(), "mismatch", err.Error())
		} else {
			log.Info("resources.accelerator", "accelerator", accel.String())
		}
	}
	// Checked whatever the device, so a typo fails on a CPU machine too.
	exec, err := engine.ApplyMetadata(engine.Execution{}, src.Config.ModelMetadata)
	if err != nil {
		return cuda.Placement{}, engine.Execution{}, nil, err
	}
	placement, err := cuda.Select(req, inv.Devices, probeErr)
	if err != nil {
		return cuda.Placement{}, engine.Execution{}, nil, err
	}
	if placement.Kind == cuda.CPU {
		log.Info("running on the CPU", "device", req.String(), "reason", placement.Reason)
		return placement, engine.Execution{}, nil, nil
	}
	exec.CUDA, exec.DeviceID = true, placement.Device.Index
	worker, err := cuda.Open(placement.Device.Index)
	if err != nil {
		return cuda.Placement{}, engine.Execution{}, nil, fmt.Errorf("--device %s: %w", req, err)
	}
	log.Info("running on the GPU", "device", placement.String(), "name", placement.Device.Name, "execution", exec.String())
	return placement, exec, worker, nil
}

// batchingOptions turns config.yaml's runtime section into batcher options.
func batchingOptions(rt config.Runtime, obs batching.Observer) []batching.Option {
	bc := rt.Batching
	return []batching.Option{
		batching.WithPredictConcurrency(rt.PredictConcurrency),
		batching.WithMaxBatchSize(bc.MaxBatchSize),
		batching.WithMaxQueueDelay(time.Duration(bc.MaxQueueDelayUS) * time.Microsecond),
		batching.WithPreferredBatchSizes(bc.PreferredBatchSizes...),
		batching.WithMaxQueueSize(bc.MaxQueueSize),
		batching.WithQueueTimeout(time.Duration(bc.QueueTimeoutMS) * time.Millisecond),
		batching.WithObserver(obs),
	}
}
