package server

import (
	"context"
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

func TestWaitIdleKeepsAnswering503UntilRequestsFinish(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s := New(Options{})
	s.SetReady(Model{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	})})
	ts := newHTTPTestServer(t, s)
	first := make(chan int, 1)
	go func() {
		resp, err := http.Post(ts+"/v1/models/model:predict", "application/json", strings.NewReader("{}"))
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-started
	s.SetClosing()
	idle := make(chan bool, 1)
	go func() { idle <- s.WaitIdle(context.Background()) }()

	resp, err := http.Post(ts+"/v1/models/model:predict", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("request while draining: status %d, want 503", resp.StatusCode)
	}
	select {
	case <-idle:
		t.Fatal("WaitIdle returned while a request was in flight")
	default:
	}
	close(release)
	if code := <-first; code != http.StatusOK {
		t.Errorf("request in flight: status %d, want 200", code)
	}
	if !<-idle {
		t.Error("WaitIdle = false, want true once the request finished")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if !s.WaitIdle(ctx) {
		t.Error("WaitIdle on an idle server = false, want true")
	}
}
