package openai

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserver/modelserver/server"
)

// TestMountedInServer serves the API through server.Server as the
// coordinator wires it: the routes behind the server's middleware and the
// predict handler as the model's Handler.
func TestMountedInServer(t *testing.T) {
	m := newFakeModel("abc")
	m.gate = make(chan struct{})
	reg := prometheus.NewRegistry()
	api := New(Options{Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	api.SetModel(m)
	routes := api.Routes()
	// A method pattern is more specific than the server's own
	// "/v1/websocket", so the two coexist and upgrades (GETs) reach the LLM.
	routes["GET /v1/websocket"] = api.WebSocketHandler()
	srv := server.New(server.Options{Routes: routes, Registerer: reg, Gatherer: reg, Logger: slog.New(slog.DiscardHandler)})
	srv.SetReady(server.Model{Handler: api.PredictHandler()})
	hs := httptest.NewServer(srv.Handler())
	defer func() {
		hs.Close()
		m.wg.Wait()
	}()

	get := func(path string) (int, string) {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if status, body := get("/v1/models"); status != 200 || !strings.Contains(body, `"id":"fake-llm"`) {
		t.Errorf("GET /v1/models = %d %s", status, body)
	}
	if status, body := get("/v1/models/model"); status != 200 || body != "{}" {
		t.Errorf("Truss readiness = %d %s, want 200 {}", status, body)
	}

	// SSE passes the server's middleware unbuffered: each event arrives
	// while the model is held before the next token.
	resp, err := http.Post(hs.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"x"}],"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	events := bufio.NewReader(resp.Body)
	readEvent := func() string {
		line, err := events.ReadString('\n')
		if err != nil {
			t.Fatalf("reading SSE: %v", err)
		}
		events.ReadString('\n')
		return line
	}
	readEvent() // the role delta
	for _, want := range []string{"a", "b", "c"} {
		m.gate <- struct{}{}
		if ev := readEvent(); !strings.Contains(ev, `"content":"`+want+`"`) {
			t.Errorf("event %s, want content %q", ev, want)
		}
	}
	m.gate <- struct{}{}
	rest, _ := io.ReadAll(events)
	resp.Body.Close()
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("stream ended with %q", rest)
	}

	// The Truss predict route streams raw text.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 4 {
			m.gate <- struct{}{}
		}
	}()
	resp, err = http.Post(hs.URL+"/v1/models/model:predict", "application/json", strings.NewReader(`{"prompt":"x","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	<-done
	if resp.StatusCode != 200 || string(body) != "abc" || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("predict = %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	// The WebSocket mounted over the server's.
	go func() {
		for range 4 {
			m.gate <- struct{}{}
		}
	}()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/v1/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	conn.WriteMessage(websocket.TextMessage, []byte(`{"prompt":"x"}`))
	var frames []string
	for len(frames) < 4 {
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, string(data))
	}
	conn.Close()
	if !strings.Contains(frames[3], `"type":"done"`) {
		t.Errorf("WebSocket frames %q", frames)
	}
	if status, body := get("/metrics"); status != 200 || !strings.Contains(body, "modelserver_llm_generation_tokens_total 12") || !strings.Contains(body, "modelserver_http_requests_total") {
		t.Errorf("/metrics lacks the LLM or HTTP metrics:\n%s", body)
	}
}
