package openai

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/modelserver/modelserver/internal/shutdown"
)

// newShutdownServer serves api's chat route and WebSocket with each
// request's context bound to stopper, as package server's middleware does.
func newShutdownServer(t *testing.T, api *API, stopper *shutdown.Stopper) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("POST /v1/chat/completions", http.HandlerFunc(api.handleChat))
	mux.Handle("/ws", api.WebSocketHandler())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, release := stopper.Bind(r.Context())
		defer release()
		mux.ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func dialTestWS(t *testing.T, srv *httptest.Server) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	return conn
}

// TestShutdownCancelsAnswers: an answer cut short by a shutdown (its
// context cancelled with shutdown.ErrShuttingDown) ends with an explicit
// error: an SSE error event and [DONE], or a WebSocket error frame and
// close 1001.
func TestShutdownCancelsAnswers(t *testing.T) {
	const wantCode = `"code":"service_unavailable"`
	tests := []struct {
		name string
		// run starts an answer, calls stop once its first token is out
		// and checks what follows.
		run func(t *testing.T, srv *httptest.Server, m *fakeModel, stop func())
	}{
		{"sse", func(t *testing.T, srv *httptest.Server, m *fakeModel, stop func()) {
			resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json",
				strings.NewReader(`{"messages":[{"role":"user","content":"x"}],"stream":true}`))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			m.gate <- struct{}{}
			var events []string
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				data, ok := strings.CutPrefix(sc.Text(), "data: ")
				if !ok {
					continue
				}
				events = append(events, data)
				if len(events) == 2 { // the role delta, then the first token
					stop()
				}
			}
			if n := len(events); n != 4 || !strings.Contains(events[2], wantCode) || events[3] != "[DONE]" {
				t.Errorf("events %q, want the opening, one token, a service_unavailable error and [DONE]", events)
			}
		}},
		{"websocket", func(t *testing.T, srv *httptest.Server, m *fakeModel, stop func()) {
			conn := dialTestWS(t, srv)
			conn.WriteMessage(websocket.TextMessage, []byte(`{"prompt":"x"}`))
			m.gate <- struct{}{}
			if _, data, err := conn.ReadMessage(); err != nil || !strings.Contains(string(data), `"type":"delta"`) {
				t.Fatalf("first frame %s, %v", data, err)
			}
			stop()
			_, data, err := conn.ReadMessage()
			if err != nil || !strings.Contains(string(data), `"type":"error"`) || !strings.Contains(string(data), wantCode) {
				t.Errorf("frame after the shutdown %s, %v; want a service_unavailable error", data, err)
			}
			_, _, err = conn.ReadMessage()
			if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
				t.Errorf("connection ended with %v, want close 1001", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newFakeModel("abcdef")
			m.gate = make(chan struct{})
			api := New(Options{Logger: slog.New(slog.DiscardHandler)})
			api.SetModel(m)
			stopper := shutdown.NewStopper()
			srv := newShutdownServer(t, api, stopper)
			tt.run(t, srv, m, stopper.Stop)
			m.wg.Wait()
		})
	}
}

// TestWebSocketDrain: a draining API lets a WebSocket answer finish, then
// closes the connection with 1001, refuses new connections, and Shutdown
// waits for the connection to close.
func TestWebSocketDrain(t *testing.T) {
	m := newFakeModel("abc")
	m.gate = make(chan struct{})
	api := New(Options{Logger: slog.New(slog.DiscardHandler)})
	api.SetModel(m)
	srv := newShutdownServer(t, api, shutdown.NewStopper())
	conn := dialTestWS(t, srv)
	conn.WriteMessage(websocket.TextMessage, []byte(`{"prompt":"x"}`))
	m.gate <- struct{}{}
	if _, data, err := conn.ReadMessage(); err != nil || !strings.Contains(string(data), `"text":"a"`) {
		t.Fatalf("first frame %s, %v", data, err)
	}

	api.Drain()
	if _, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a connection while draining: %v, %v; want 503", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := api.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with an answer in flight = %v, want the deadline", err)
	}

	close(m.gate)
	var frames []string
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
				t.Errorf("connection ended with %v, want close 1001", err)
			}
			break
		}
		frames = append(frames, string(data))
	}
	if n := len(frames); n != 3 || !strings.Contains(frames[n-1], `"type":"done"`) {
		t.Errorf("frames after Drain %q, want the answer's last deltas and done", frames)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := api.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown once the connection closed = %v", err)
	}
	m.wg.Wait()
}
