package chains

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/modelserver/modelserver/internal/auth"
)

// Environment and files Main reads, as Truss names them where it has a name.
const (
	envChainlet      = "CHAINS_CHAINLET"
	envPort          = "INFERENCE_SERVER_PORT"
	envAPIKey        = "TRUSS_SECRET_baseten_chain_api_key"
	envDepPrefix     = "CHAINS_DEP_"
	defaultAPIKeyDir = "/secrets/baseten_chain_api_key"
)

// Main is the main function of a Chain binary: a Go main package calls it
// with its Chainlets and the binary then serves any one of them or writes
// the Chain's deployment files. It is the only function of the package that
// reads flags, the environment and secret files; it exits the process.
//
//	chain [serve] --chainlet NAME [--host H] [--port P] [--dynamic-config FILE] [--dep NAME=URL]... [--require-api-key]
//	chain gen-deploy --out DIR --package ./path/to/chain
//
// serve: --chainlet defaults to $CHAINS_CHAINLET, --port to
// $INFERENCE_SERVER_PORT, else 8080. Dependency URLs come from the dynamic
// Chainlet config (default /etc/b10_dynamic_config/dynamic_chainlet_config,
// optional), overridden by $CHAINS_DEP_<NAME>=URL, overridden by --dep. The
// Chain's API key is the file /secrets/baseten_chain_api_key or
// $TRUSS_SECRET_baseten_chain_api_key; --require-api-key makes the
// Chainlet refuse predicts without it (401), as Baseten's gateway does.
// SIGINT/SIGTERM shut down gracefully.
func Main(chainlets ...any) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr, chainlets)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer, chainlets []any) int {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	c, err := New(chainlets...)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		err = runServe(ctx, c, args, env, stdout, stderr)
	case "gen-deploy":
		err = runGenDeploy(c, args, stdout, stderr)
	default:
		err = fmt.Errorf("unknown command %q (serve, gen-deploy)", cmd)
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

type depFlags map[string]Endpoint

func (d depFlags) String() string { return "" }

func (d depFlags) Set(s string) error {
	name, url, ok := strings.Cut(s, "=")
	if !ok || name == "" || url == "" {
		return fmt.Errorf("want NAME=URL, got %q", s)
	}
	d[name] = Endpoint{URL: url}
	return nil
}

func runServe(ctx context.Context, c *Chain, args []string, env map[string]string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := 8080
	if p, err := strconv.Atoi(env[envPort]); err == nil {
		port = p
	}
	deps := depFlags{}
	name := fs.String("chainlet", env[envChainlet], "Chainlet to serve: "+strings.Join(c.Names(), ", "))
	host := fs.String("host", "0.0.0.0", "listen address")
	fs.IntVar(&port, "port", port, "listen port")
	dynConfig := fs.String("dynamic-config", DynamicConfigPath, "Truss dynamic Chainlet config (dependency URLs); optional")
	fs.Var(deps, "dep", "dependency URL as NAME=URL (repeatable); overrides the dynamic config")
	apiKeyFile := fs.String("api-key-file", defaultAPIKeyDir, "file holding the Chain's API key")
	logFormat := fs.String("log-format", "json", "json or text")
	grace := fs.Duration("shutdown-grace", 30*time.Second, "time in-flight requests get on shutdown")
	requireKey := fs.Bool("require-api-key", false, "answer 401 to predicts without the Chain's API key (as the gateway would)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var handler slog.Handler
	switch *logFormat {
	case "json":
		handler = slog.NewJSONHandler(stderr, nil)
	case "text":
		handler = slog.NewTextHandler(stderr, nil)
	default:
		return fmt.Errorf("--log-format must be json or text, got %q", *logFormat)
	}
	log := slog.New(handler)
	endpoints := map[string]Endpoint{}
	if data, err := os.ReadFile(*dynConfig); err == nil {
		if endpoints, err = ParseDynamicConfig(data); err != nil {
			return fmt.Errorf("%s: %w", *dynConfig, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, n := range c.Names() {
		if url := env[envDepPrefix+strings.ToUpper(n)]; url != "" {
			endpoints[n] = Endpoint{URL: url}
		}
	}
	for n, ep := range deps {
		endpoints[n] = ep
	}
	opts := serveDefaults(ServeOptions{
		Chainlet:      *name,
		Endpoints:     endpoints,
		APIKey:        readAPIKey(*apiKeyFile, env[envAPIKey]),
		Logger:        log,
		ShutdownGrace: *grace,
	})
	if *requireKey {
		if opts.APIKey == "" {
			return fmt.Errorf("--require-api-key: no API key in %s or $%s", *apiKeyFile, envAPIKey)
		}
		keys, err := auth.NewKeys([]string{opts.APIKey})
		if err != nil {
			return err
		}
		opts.Server.APIKeys = keys
	}
	h, err := c.Handler(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "chainlet %s listening on %s\n", *name, ln.Addr())
	return c.serve(ctx, ln, h, opts)
}

// readAPIKey reads the Chain's API key as Truss's secrets resolver does:
// the file wins over the environment.
func readAPIKey(file, envValue string) string {
	if b, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b))
	}
	return envValue
}

func runGenDeploy(c *Chain, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gen-deploy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "output directory, inside the repository (required)")
	pkg := fs.String("package", "", "the Chain's main package, relative to the repository root, e.g. ./examples/chains/hello (required)")
	root := fs.String("root", ".", "repository root (the Docker build context)")
	image := fs.String("image", DefaultImage, "modelserver image for CPU Chainlets")
	cudaImage := fs.String("cuda-image", DefaultCUDAImage, "modelserver image for GPU Chainlets (built from Dockerfile.cuda)")
	basePort := fs.Int("base-port", DefaultBasePort, "host port of the first Chainlet; the others follow")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *pkg == "" {
		return errors.New("gen-deploy: --out and --package are required")
	}
	rel, err := filepath.Rel(*root, *out)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("gen-deploy: --out %s must be inside --root %s", *out, *root)
	}
	files, err := c.DeployFiles(DeployOptions{Package: *pkg, OutDir: filepath.ToSlash(rel), Image: *image, CUDAImage: *cudaImage, BasePort: *basePort})
	if err != nil {
		return err
	}
	if err := WriteFiles(*out, files); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d files to %s; run: docker compose -f %s up --build\n", len(files), *out, filepath.Join(*out, ComposeFile))
	return nil
}
