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
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc/grpclog"

	"github.com/modelserver/modelserver/grpcserver"
	"github.com/modelserver/modelserver/internal/auth"
	"github.com/modelserver/modelserver/oip"
	"github.com/modelserver/modelserver/openai"
	"github.com/modelserver/modelserver/server"
	"github.com/modelserver/modelserver/telemetry"
)

// envAPIKeys holds comma-separated API keys. Keys never come from a flag,
// which would show in ps.
const envAPIKeys = "MODELSERVER_API_KEYS"

// loadAPIKeys reads the keys of --api-keys-file and $MODELSERVER_API_KEYS;
// none at all disables authentication.
func loadAPIKeys(file, env string) (*auth.Keys, error) {
	list := auth.ParseKeys(env)
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--api-keys-file: %w", err)
		}
		fileKeys := auth.ParseKeys(string(b))
		if len(fileKeys) == 0 {
			return nil, fmt.Errorf("--api-keys-file %s holds no key", file)
		}
		list = append(list, fileKeys...)
	}
	keys, err := auth.NewKeys(list)
	if err != nil {
		return nil, fmt.Errorf("API keys (--api-keys-file, $%s): %w", envAPIKeys, err)
	}
	return keys, nil
}

// splitList splits a comma-separated flag value; "" is an empty, non-nil
// list.
func splitList(s string) []string {
	out := []string{}
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// serverLimits are the connection-level limits of both listeners.
type serverLimits struct {
	readHeaderTimeout        time.Duration
	idleTimeout              time.Duration
	maxHeaderBytes           int
	maxConnections           int
	grpcMaxConcurrentStreams uint
}

// Defaults of serverLimits (documented in README.md).
const (
	defaultReadHeaderTimeout        = 10 * time.Second
	defaultIdleTimeout              = 120 * time.Second
	defaultMaxHeaderBytes           = 1 << 20
	defaultMaxConnections           = 4096
	defaultGRPCMaxConcurrentStreams = grpcserver.DefaultMaxConcurrentStreams
)

func (l *serverLimits) register(fs *flag.FlagSet) {
	fs.DurationVar(&l.readHeaderTimeout, "read-header-timeout", defaultReadHeaderTimeout, "time a client has to send a request's headers (HTTP) or finish its handshake (gRPC) before the connection is closed")
	fs.DurationVar(&l.idleTimeout, "idle-timeout", defaultIdleTimeout, "how long an idle keep-alive HTTP connection is kept")
	fs.IntVar(&l.maxHeaderBytes, "max-header-bytes", defaultMaxHeaderBytes, "largest HTTP request header block; larger ones get 431")
	fs.IntVar(&l.maxConnections, "max-connections", defaultMaxConnections, "open connections per listener (HTTP, gRPC); further clients wait to be accepted; 0 means no limit")
	fs.UintVar(&l.grpcMaxConcurrentStreams, "grpc-max-concurrent-streams", defaultGRPCMaxConcurrentStreams, "gRPC calls in flight per connection")
}

func (l *serverLimits) check() error {
	switch {
	case l.readHeaderTimeout <= 0:
		return errors.New("--read-header-timeout must be positive")
	case l.idleTimeout <= 0:
		return errors.New("--idle-timeout must be positive")
	case l.maxHeaderBytes <= 0:
		return errors.New("--max-header-bytes must be positive")
	case l.maxConnections < 0:
		return errors.New("--max-connections must be 0 (no limit) or positive")
	case l.grpcMaxConcurrentStreams == 0 || l.grpcMaxConcurrentStreams > 1<<31:
		return errors.New("--grpc-max-concurrent-streams must be between 1 and 2^31")
	}
	return nil
}

// listen opens a TCP listener that holds at most maxConnections
// connections at once.
func (l *serverLimits) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil || l.maxConnections == 0 {
		return ln, err
	}
	return netutil.LimitListener(ln, l.maxConnections), nil
}

// httpServer returns the HTTP server for h under the limits. Request bodies
// have no overall read timeout: a large body may take long on a slow link,
// and the body size is capped instead.
func (l *serverLimits) httpServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.readHeaderTimeout,
		IdleTimeout:       l.idleTimeout,
		MaxHeaderBytes:    l.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// routeGRPCLogs sends gRPC's own error lines through log, so that stderr
// stays one format; its info and warning lines are dropped, as gRPC's
// default logger does. It must run before any other gRPC call.
func routeGRPCLogs(log *slog.Logger) {
	errorLines := slog.NewLogLogger(log.Handler(), slog.LevelError).Writer()
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, errorLines))
}

// startTracing installs the W3C propagator and, when the OTEL_* environment
// asks for export, a tracer provider that exports spans; the returned func
// flushes them.
func startTracing(log *slog.Logger) (func(), error) {
	otel.SetTextMapPropagator(telemetry.Propagator())
	if !telemetry.ExportConfigured(os.Getenv) {
		return func() {}, nil
	}
	tp, err := telemetry.NewTracerProvider(context.Background(), "modelserver")
	if err != nil {
		return nil, err
	}
	otel.SetTracerProvider(tp)
	log.Info("exporting OpenTelemetry spans")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			log.Warn("flushing OpenTelemetry spans", "error", err)
		}
	}, nil
}

// drain shuts the transports down after the first signal: readiness and new
// requests answer 503 (gRPC UNAVAILABLE) at once, and the HTTP listener
// stays open until the requests in flight are done; requests, streams and
// WebSocket messages in flight get grace to finish; then what is left is
// cancelled with an explicit "shutting down" answer, given
// server.CancelGrace to send it, and the connections are closed. llmAPI,
// set for an LLM, has WebSocket connections of its own to wait for.
func drain(grace time.Duration, httpServer *http.Server, srv *server.Server, oipHandler *oip.Handler, grpcSrv *grpcserver.Server, llmAPI *openai.API, log *slog.Logger) {
	srv.SetClosing()
	oipHandler.SetClosing()
	if grpcSrv != nil {
		grpcSrv.SetClosing()
	}
	if llmAPI != nil {
		llmAPI.Drain()
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("grace period over; WebSocket connections still open were cancelled", "error", err)
		}
	})
	if llmAPI != nil {
		wg.Go(func() {
			if err := llmAPI.Shutdown(ctx); err != nil {
				log.Warn("grace period over; LLM WebSocket answers still in flight were cancelled", "error", err)
				srv.Cancel()
				cancelCtx, cancelDone := context.WithTimeout(context.Background(), server.CancelGrace)
				defer cancelDone()
				llmAPI.Shutdown(cancelCtx)
			}
		})
	}
	if grpcSrv != nil {
		wg.Go(func() {
			if err := grpcSrv.Shutdown(ctx); err != nil {
				log.Warn("grace period over; gRPC calls still in flight were cancelled", "error", err)
			}
		})
	}
	// The listener stays open while work is in flight, so a request that
	// still arrives gets 503 rather than a refused connection.
	srv.WaitIdle(ctx)
	if err := httpServer.Shutdown(ctx); err != nil {
		log.Warn("grace period over; HTTP requests still in flight were cancelled", "error", err)
		srv.Cancel()
		cancelCtx, cancelDone := context.WithTimeout(context.Background(), server.CancelGrace)
		defer cancelDone()
		if httpServer.Shutdown(cancelCtx) != nil {
			httpServer.Close()
		}
	}
	wg.Wait()
}

// exitOnSecondSignal exits the process at once, with status 128+signal as a
// shell reports a death by that signal, when a second SIGTERM or SIGINT
// arrives before done is closed.
func exitOnSecondSignal(signals <-chan os.Signal, done <-chan struct{}, log *slog.Logger) {
	select {
	case sig := <-signals:
		log.Warn("second signal: exiting now", "signal", sig.String())
		code := 1
		if s, ok := sig.(syscall.Signal); ok {
			code = 128 + int(s)
		}
		os.Exit(code)
	case <-done:
	}
}
