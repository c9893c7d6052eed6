package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// echoHandler answers predict with the body it read, so a test sees both the
// delegation and the body cap.
var echoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(append([]byte("echo:"), body...))
})

func TestModelHandlerServesPredict(t *testing.T) {
	s := New(Options{
		MaxRequestBytes: 16,
		Routes: map[string]http.Handler{
			"POST /v1/extra": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "extra")
			}),
		},
	})
	ts := newHTTPTestServer(t, s)
	post := func(path, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(ts+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, _ := post("/v1/models/model:predict", "{}"); code != http.StatusServiceUnavailable {
		t.Fatalf("predict before ready: status %d, want 503", code)
	}
	s.SetReady(Model{Handler: echoHandler})
	tests := []struct {
		path, body string
		wantCode   int
		wantBody   string
	}{
		{"/v1/models/model:predict", `{"a":1}`, http.StatusOK, `echo:{"a":1}`},
		{"/invocations", `"x"`, http.StatusOK, `echo:"x"`},
		{"/v1/models/model:predict", strings.Repeat("x", 17), http.StatusRequestEntityTooLarge, ""},
		{"/v1/extra", "", http.StatusOK, "extra"},
	}
	for _, tt := range tests {
		code, body := post(tt.path, tt.body)
		if code != tt.wantCode || (tt.wantBody != "" && body != tt.wantBody) {
			t.Errorf("POST %s %q: got %d %q, want %d %q", tt.path, tt.body, code, body, tt.wantCode, tt.wantBody)
		}
	}
	s.SetClosing()
	if code, _ := post("/v1/models/model:predict", "{}"); code != http.StatusServiceUnavailable {
		t.Errorf("predict while closing: status %d, want 503", code)
	}
}
