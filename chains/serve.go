package chains

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserver/modelserver/server"
)

// ErrMissingEndpoint means a dependency has no URL: it is not in the
// dynamic Chainlet config, the flags or the environment.
var ErrMissingEndpoint = errors.New("chains: missing dependency endpoint")

// DynamicConfigPath is where Truss mounts the dynamic Chainlet config.
const DynamicConfigPath = "/etc/b10_dynamic_config/dynamic_chainlet_config"

// PredictPath is the Truss route a Chainlet is called on.
const PredictPath = "/v1/models/model:predict"

// ParseDynamicConfig reads Truss's dynamic_chainlet_config: a JSON object
// keyed by Chainlet (display) name whose values hold "predict_url" and,
// taking precedence, "internal_url": {"gateway_run_remote_url", "hostname"}.
func ParseDynamicConfig(data []byte) (map[string]Endpoint, error) {
	type internalURL struct {
		URL      string `json:"gateway_run_remote_url"`
		Hostname string `json:"hostname"`
	}
	var raw map[string]struct {
		PredictURL  string       `json:"predict_url"`
		InternalURL *internalURL `json:"internal_url"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDynamicConfig, err)
	}
	out := make(map[string]Endpoint, len(raw))
	for name, v := range raw {
		switch {
		case v.InternalURL != nil && v.InternalURL.URL != "":
			out[name] = Endpoint{URL: v.InternalURL.URL, Host: v.InternalURL.Hostname}
		case v.PredictURL != "":
			out[name] = Endpoint{URL: v.PredictURL}
		default:
			return nil, fmt.Errorf("%w: Chainlet %q has neither predict_url nor internal_url", ErrBadDynamicConfig, name)
		}
	}
	return out, nil
}

// ServeOptions configure serving one Chainlet of a Chain.
type ServeOptions struct {
	// Chainlet is the name of the Chainlet to serve. Required.
	Chainlet string
	// Endpoints are the dependencies' URLs by Chainlet name.
	Endpoints map[string]Endpoint
	// APIKey is sent as "Authorization: Api-Key <key>" to dependencies.
	APIKey string
	// Logger receives the Chainlet's error and retry logs. Default
	// slog.Default().
	Logger *slog.Logger
	// Registerer receives the dependency_chainlet_* metrics; nil records
	// none.
	Registerer prometheus.Registerer
	// Server configures the HTTP server of Serve; its Logger and metrics
	// registry default to the ones above.
	Server server.Options
	// ShutdownGrace is how long in-flight requests get when Serve's
	// context ends. Default 30 s.
	ShutdownGrace time.Duration
}

// Handler binds the dependencies of the named Chainlet (those without a
// mock) to HTTP clients and returns the Chainlet's predict handler, for
// server.Model.Handler.
func (c *Chain) Handler(opts ServeOptions) (http.Handler, error) {
	cl, ok := c.byName[opts.Chainlet]
	if opts.Chainlet == "" {
		return nil, fmt.Errorf("chains: name the Chainlet to serve (one of %s)", strings.Join(c.Names(), ", "))
	}
	if !ok {
		return nil, fmt.Errorf("chains: no Chainlet %q in this Chain (have: %s)", opts.Chainlet, strings.Join(c.Names(), ", "))
	}
	if cl.model != nil {
		return nil, fmt.Errorf("chains: Chainlet %s is a model: serve it with modelserver --model %s", cl.name, cl.model.Model)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	var m *depMetrics
	if opts.Registerer != nil {
		m = newDepMetrics(opts.Registerer)
	}
	if err := c.bindDeps(cl, opts.Endpoints, opts.APIKey, nil, log, m); err != nil {
		return nil, err
	}
	return &chainletHandler{cl: cl, log: log}, nil
}

func (c *Chain) bindDeps(cl *chainlet, endpoints map[string]Endpoint, apiKey string, rt http.RoundTripper, log *slog.Logger, m *depMetrics) error {
	var missing []string
	for _, d := range cl.deps {
		if d.dep.mocked() {
			continue
		}
		ep, ok := endpoints[d.target]
		if !ok {
			missing = append(missing, d.target)
			continue
		}
		target := c.byName[d.target]
		d.dep.bind(newHTTPTransport(d.target, ep, apiKey, d.opts, rt, log, m), d.opts, target.model != nil && target.model.LLM)
	}
	if len(missing) > 0 {
		known := make([]string, 0, len(endpoints))
		for k := range endpoints {
			known = append(known, k)
		}
		slices.Sort(known)
		return fmt.Errorf("%w: Chainlet %s needs %s; endpoints known: [%s]", ErrMissingEndpoint, cl.name, strings.Join(missing, ", "), strings.Join(known, ", "))
	}
	return nil
}

// Serve serves one Chainlet on ln through modelserver's Truss routes
// (predict, readiness, liveness, /metrics) until ctx ends, then shuts down
// gracefully.
func (c *Chain) Serve(ctx context.Context, ln net.Listener, opts ServeOptions) error {
	opts = serveDefaults(opts)
	h, err := c.Handler(opts)
	if err != nil {
		return err
	}
	return c.serve(ctx, ln, h, opts)
}

func serveDefaults(opts ServeOptions) ServeOptions {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Server.Logger == nil {
		opts.Server.Logger = opts.Logger
	}
	if opts.Server.Registerer == nil || opts.Server.Gatherer == nil {
		reg := prometheus.NewRegistry()
		opts.Server.Registerer, opts.Server.Gatherer = reg, reg
	}
	if opts.Registerer == nil {
		opts.Registerer = opts.Server.Registerer
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 30 * time.Second
	}
	return opts
}

// serve runs h, a handler from Handler, behind modelserver's server.
func (c *Chain) serve(ctx context.Context, ln net.Listener, h http.Handler, opts ServeOptions) error {
	srv := server.New(opts.Server)
	srv.SetReady(server.Model{Handler: h})
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	srv.SetClosing()
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownGrace)
	defer cancel()
	err := hs.Shutdown(sctx)
	for _, d := range c.byName[opts.Chainlet].deps {
		d.dep.closeIdle()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// LocalOptions configure RunLocal.
type LocalOptions struct {
	// Endpoints are URLs for Chainlets that cannot run in this process
	// (model Chainlets), by name; a dependency on a model Chainlet needs
	// either one or a mock.
	Endpoints map[string]Endpoint
	// APIKey is sent to those endpoints.
	APIKey string
	// Logger as in ServeOptions.
	Logger *slog.Logger
}

// RunLocal wires the whole Chain in this process and returns a client of
// its entrypoint. Dependencies are direct calls that still go through the
// wire path (serialization in each dependency's mode, error bodies,
// retries, streaming framing), so type and serialization errors show up
// locally; a Dep holding a Mock calls the mock instead. In and Out must be
// the entrypoint's RunRemote types.
func RunLocal[In, Out any](c *Chain, opts LocalOptions) (Dep[In, Out], error) {
	var entry Dep[In, Out]
	in, out := entry.depTypes()
	if in != c.entry.in || out != c.entry.out {
		return entry, fmt.Errorf("chains: RunLocal[%s, %s] but the entrypoint %s.RunRemote takes %s and returns %s", in, out, c.entry.name, c.entry.in, c.entry.out)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	local := &inProcessTransport{handlers: make(map[string]http.Handler)}
	endpoints := make(map[string]Endpoint, len(c.chainlets))
	for name, ep := range opts.Endpoints {
		endpoints[name] = ep
	}
	for _, cl := range c.chainlets {
		if cl.model != nil {
			continue
		}
		host := strings.ToLower(cl.name) + ".chainlet.local"
		local.handlers[host] = &chainletHandler{cl: cl, log: log}
		endpoints[cl.name] = Endpoint{URL: "http://" + host + PredictPath}
	}
	rt := &localRoundTripper{local: local, next: http.DefaultTransport}
	for _, cl := range c.chainlets {
		if cl.model != nil {
			continue
		}
		if err := c.bindDeps(cl, endpoints, opts.APIKey, rt, log, nil); err != nil {
			return entry, err
		}
	}
	defaults := DepOptions{Retries: DefaultRetries, Timeout: DefaultTimeout, Concurrency: DefaultConcurrency}
	entry.bind(newHTTPTransport(c.entry.name, endpoints[c.entry.name], opts.APIKey, defaults, rt, log, nil), defaults, false)
	return entry, nil
}

// localRoundTripper sends requests for in-process Chainlets to their
// handlers and the rest over the network.
type localRoundTripper struct {
	local *inProcessTransport
	next  http.RoundTripper
}

func (t *localRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, ok := t.local.handlers[req.URL.Host]; ok {
		return t.local.RoundTrip(req)
	}
	return t.next.RoundTrip(req)
}
