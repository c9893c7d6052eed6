package oip

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// HeaderInferenceHeaderContentLength is the binary tensor data extension's
// header: the length of the JSON part of a body that continues with binary
// tensor data.
const HeaderInferenceHeaderContentLength = "Inference-Header-Content-Length"

// HandlerOptions configure a Handler. Zero fields take the documented
// defaults.
type HandlerOptions struct {
	// MaxRequestBytes caps a request body; larger ones get 413.
	// Default DefaultMaxRequestBytes (100 MiB).
	MaxRequestBytes int64
	// PredictTimeout bounds queueing plus execution of one inference; past
	// it the request gets 504. 0 means no limit.
	PredictTimeout time.Duration
	// ServerName and ServerVersion are reported by GET /v2.
	// Default name DefaultServerName, version "".
	ServerName    string
	ServerVersion string
	// Logger receives errors that are the server's fault. Default
	// slog.Default().
	Logger *slog.Logger
}

// Defaults of HandlerOptions.
const (
	DefaultMaxRequestBytes = 100 << 20
	DefaultServerName      = "modelserver"
)

// HTTPExtensions lists the protocol extensions the HTTP handler reports in
// server metadata.
var HTTPExtensions = []string{"binary_tensor_data"}

// Handler serves the Open Inference Protocol over HTTP for one model:
//
//	GET  /v2/health/live
//	GET  /v2/health/ready
//	GET  /v2
//	GET  /v2/models/{name}[/versions/{version}]
//	GET  /v2/models/{name}[/versions/{version}]/ready
//	POST /v2/models/{name}[/versions/{version}]/infer
//
// Until SetReady is called, readiness, metadata and inference answer 503;
// liveness answers 200 from the start. Errors answer {"error": "..."} with
// the status httpStatus gives.
type Handler struct {
	opts    HandlerOptions
	log     *slog.Logger
	model   atomic.Pointer[httpModel]
	closing atomic.Bool
	mux     *http.ServeMux
}

var _ http.Handler = (*Handler)(nil)

type httpModel struct {
	Model
	metadata    []byte // the model metadata JSON
	metadataErr error
}

// NewHandler returns a handler whose model is not ready yet.
func NewHandler(opts HandlerOptions) *Handler {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.ServerName == "" {
		opts.ServerName = DefaultServerName
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &Handler{opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /v2/health/live", h.handleLive)
	h.mux.HandleFunc("GET /v2/health/ready", h.handleReady)
	h.mux.HandleFunc("GET /v2", h.handleServerMetadata)
	for _, prefix := range []string{"/v2/models/{name}", "/v2/models/{name}/versions/{version}"} {
		h.mux.HandleFunc("GET "+prefix, h.handleModelMetadata)
		h.mux.HandleFunc("GET "+prefix+"/ready", h.handleModelReady)
		h.mux.HandleFunc("POST "+prefix+"/infer", h.handleInfer)
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// SetReady publishes the loaded model; from now on readiness answers 200
// and inference runs. m.Name must be set.
func (h *Handler) SetReady(m Model) {
	hm := &httpModel{Model: m.WithDefaults()}
	md, err := ModelMetadata(hm.Model)
	if err == nil {
		hm.metadata, err = json.Marshal(md)
	}
	hm.metadataErr = err
	h.model.Store(hm)
}

// SetClosing makes readiness and new requests answer 503 while requests in
// flight finish, so that load balancers stop sending before shutdown.
func (h *Handler) SetClosing() { h.closing.Store(true) }

func (h *Handler) readyModel() (*httpModel, error) {
	if h.closing.Load() {
		return nil, errShuttingDown
	}
	m := h.model.Load()
	if m == nil {
		return nil, errNotReady
	}
	return m, nil
}

// lookup returns the ready model the request's path names.
func (h *Handler) lookup(r *http.Request) (*httpModel, error) {
	m, err := h.readyModel()
	if err != nil {
		return nil, err
	}
	if err := m.Lookup(r.PathValue("name"), r.PathValue("version")); err != nil {
		return nil, err
	}
	return m, nil
}

func (h *Handler) handleLive(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, []byte(`{"live":true}`))
}

func (h *Handler) handleReady(w http.ResponseWriter, r *http.Request) {
	if _, err := h.readyModel(); err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"ready":true}`))
}

func (h *Handler) handleServerMetadata(w http.ResponseWriter, _ *http.Request) {
	body, _ := json.Marshal(struct {
		Name       string   `json:"name"`
		Version    string   `json:"version"`
		Extensions []string `json:"extensions"`
	}{h.opts.ServerName, h.opts.ServerVersion, HTTPExtensions})
	writeJSON(w, http.StatusOK, body)
}

func (h *Handler) handleModelMetadata(w http.ResponseWriter, r *http.Request) {
	m, err := h.lookup(r)
	if err == nil {
		err = m.metadataErr
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m.metadata)
}

func (h *Handler) handleModelReady(w http.ResponseWriter, r *http.Request) {
	m, err := h.lookup(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	body, _ := json.Marshal(struct {
		Name  string `json:"name"`
		Ready bool   `json:"ready"`
	}{m.Name, true})
	writeJSON(w, http.StatusOK, body)
}

// writeError answers {"error": err} with err's status, logging the errors
// that are the server's or the model's fault (500).
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := httpStatus(err)
	if status == http.StatusInternalServerError {
		h.log.ErrorContext(r.Context(), "OIP request failed", "path", r.URL.Path, "status", status, "error", err)
	}
	body, _ := json.Marshal(map[string]string{"error": err.Error()})
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
