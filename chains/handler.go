package chains

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/modelserver/modelserver/internal/httpbody"
)

// Headers a Chainlet forwards from its request to its dependencies, as
// Truss Chains does.
const (
	HeaderTraceParent    = "traceparent"
	HeaderRequestID      = "x-baseten-request-id"
	HeaderChainRequestID = "x-baseten-chain-request-id"
)

var forwardedHeaders = []string{HeaderTraceParent, HeaderRequestID, HeaderChainRequestID}

// Truss's error headers (truss-wire.md §1.1).
const (
	headerErrorSource = "X-BASETEN-ERROR-SOURCE"
	headerErrorCode   = "X-BASETEN-ERROR-CODE"
	errorSourceServer = "04"
	codeModel         = "600"
	codeClient        = "700"
)

type forwardedKey struct{}

// WithForwardedHeaders returns a context carrying the headers of h that
// calls to dependencies forward (traceparent, x-baseten-request-id,
// x-baseten-chain-request-id). A served Chainlet does this for every request.
func WithForwardedHeaders(ctx context.Context, h http.Header) context.Context {
	fwd := make(http.Header)
	for _, k := range forwardedHeaders {
		if v := h.Get(k); v != "" {
			fwd.Set(k, v)
		}
	}
	return context.WithValue(ctx, forwardedKey{}, fwd)
}

// ForwardedHeaders returns the headers that calls made with ctx forward,
// for logging request ids; nil when there are none. Do not modify it.
func ForwardedHeaders(ctx context.Context) http.Header {
	h, _ := ctx.Value(forwardedKey{}).(http.Header)
	return h
}

// chainletHandler serves one Go Chainlet's predict route: it decodes the
// request into RunRemote's input, calls it, and writes the output in the
// request's format, or the Chainlet's error as Truss does.
type chainletHandler struct {
	cl  *chainlet
	log *slog.Logger
}

// maxBody is a backstop; the server in front already caps bodies.
const maxBody = 1 << 40

func (h *chainletHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := httpbody.Read(w, r, maxBody)
	if err != nil {
		status := http.StatusBadRequest
		switch {
		case errors.Is(err, httpbody.ErrTooLarge):
			status = http.StatusRequestEntityTooLarge
		case errors.Is(err, httpbody.ErrClientGone):
			status = 499
		}
		writeTrussError(w, status, codeClient, err.Error())
		return
	}
	binary := isBinary(r.Header.Get("Content-Type"))
	in := reflect.New(h.cl.in).Elem()
	if err := decodeValue(body, binary, in); err != nil {
		writeTrussError(w, http.StatusBadRequest, codeClient, "Input Parsing Error: "+strings.TrimPrefix(err.Error(), ErrSerialization.Error()+": "))
		return
	}
	ctx := WithForwardedHeaders(r.Context(), r.Header)
	out, err := h.invoke(ctx, in)
	if err != nil {
		h.writeChainletError(w, err)
		return
	}
	if h.cl.stream != notStream {
		if out.IsNil() {
			h.writeChainletError(w, fmt.Errorf("%s.RunRemote returned a nil stream", h.cl.name))
			return
		}
		onError := func(err error) {
			h.log.Error("Exception while generating streamed response: "+err.Error(), "chainlet", h.cl.name)
		}
		if !wantsGathered(r.Header) {
			writeStream(w, out, h.cl.stream, onError)
			return
		}
		out = reflect.ValueOf(gatherStream(out, h.cl.stream, onError))
	}
	payload, err := encodeValue(out, binary)
	if err != nil {
		h.writeChainletError(w, err)
		return
	}
	ct := "application/json"
	if binary {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
	w.WriteHeader(http.StatusOK)
	w.Write(payload)
}

// invoke calls RunRemote, turning a panic into an error with the panic's
// user frames.
func (h *chainletHandler) invoke(ctx context.Context, in reflect.Value) (out reflect.Value, err error) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			// The panic site and its callers up to RunRemote are still on
			// the stack; userFrames drops the runtime and this package.
			err = &panicError{value: p, frames: userFrames(1)}
		}
	}()
	res := h.cl.run.Call([]reflect.Value{reflect.ValueOf(ctx), in})
	if e := res[1].Interface(); e != nil {
		return reflect.Value{}, e.(error)
	}
	return res[0], nil
}

func (h *chainletHandler) writeChainletError(w http.ResponseWriter, err error) {
	detail, status := errorDetail(err)
	h.log.Error("Chainlet raised Exception:\n"+detail.Format(), "chainlet", h.cl.name)
	body, mErr := json.Marshal(map[string]RemoteErrorDetail{"error": detail})
	if mErr != nil {
		writeTrussError(w, http.StatusInternalServerError, codeModel, "Internal Server Error (in model/chainlet).")
		return
	}
	writeErrorBody(w, status, codeModel, body)
}

func writeTrussError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(map[string]string{"error": msg})
	writeErrorBody(w, status, code, body)
}

func writeErrorBody(w http.ResponseWriter, status int, code string, body []byte) {
	w.Header().Set(headerErrorSource, errorSourceServer)
	w.Header().Set(headerErrorCode, code)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// wantsGathered is Truss's gather quirk: a streamed answer is sent whole,
// as one string, to a client sending exactly Accept: application/json whose
// User-Agent does not name openai.
func wantsGathered(h http.Header) bool {
	return h.Get("Accept") == "application/json" && !strings.Contains(strings.ToLower(h.Get("User-Agent")), "openai")
}

// isBinary is Truss's rule: msgpack iff the media type is
// application/octet-stream, parameters and case ignored.
func isBinary(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.Split(contentType, ";")[0]))
	}
	return mt == "application/octet-stream"
}
