package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/codec"
	"github.com/modelserver/modelserver/internal/auth"
	"github.com/modelserver/modelserver/tensor"
)

func dialWS(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(url, "http")+"/v1/websocket", nil)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func wsServer(t *testing.T, m Model, opts Options) string {
	t.Helper()
	s := New(opts)
	s.SetReady(m)
	return newHTTPTestServer(t, s)
}

func TestWebSocketPredict(t *testing.T) {
	conn := dialWS(t, wsServer(t, Model{Signature: doublerSignature, Predictor: doubler{}}, Options{}))
	// Several requests on one connection, in both encodings.
	for i := range 3 {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"x": [[1, 2]], "k": [5]}`)); err != nil {
			t.Fatal(err)
		}
		frameType, data, err := conn.ReadMessage()
		var out struct {
			Y [][]float64
			S []int64
		}
		if err != nil || frameType != websocket.TextMessage || json.Unmarshal(data, &out) != nil || out.Y[0][1] != 4 || out.S[0] != 6 {
			t.Fatalf("JSON request %d answered %d %q %v", i, frameType, data, err)
		}
	}
	body, err := codec.EncodeTensors(map[string]tensor.Tensor{
		"x": {DType: tensor.Float32, Shape: []int64{1, 2}, Data: f32bytes(3, 4)},
		"k": {DType: tensor.Int64, Shape: []int64{1}, Data: make([]byte, 8)},
	}, []string{"x", "k"}, codec.FormatMsgpack)
	if err != nil {
		t.Fatal(err)
	}
	conn.WriteMessage(websocket.BinaryMessage, body)
	frameType, data, err := conn.ReadMessage()
	if err != nil || frameType != websocket.BinaryMessage {
		t.Fatalf("msgpack request answered %d %v", frameType, err)
	}
	out, _, err := codec.DecodeTensors(data, true, doublerOutputDType)
	if err != nil || f32(out["y"].Data[4:]) != 8 {
		t.Errorf("msgpack answer %+v %v", out, err)
	}
}

func TestWebSocketStream(t *testing.T) {
	conn := dialWS(t, wsServer(t, Model{Signature: doublerSignature, Streamer: newStepper(false)}, Options{}))
	conn.WriteMessage(websocket.TextMessage, []byte(`{"x": [[1, 2]], "k": [3]}`))
	for i := 0; ; i++ {
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(data) == "{}" {
			if i != 3 {
				t.Errorf("end frame after %d chunks, want 3", i)
			}
			break
		}
		checkChunk(t, i, data)
	}
}

func TestWebSocketCloseCodes(t *testing.T) {
	url := wsServer(t, Model{Signature: doublerSignature, Predictor: doubler{}}, Options{WebSocketMaxMessageBytes: 256})
	tests := []struct {
		name    string
		message string
		code    int
		reason  string
	}{
		{"bad JSON", `{"x": [`, websocket.ClosePolicyViolation, "Invalid JSON payload"},
		{"bad input", `{"x": [[1, 2]]}`, websocket.ClosePolicyViolation, `missing input "k"`},
		{"too big", `{"x": [[` + strings.Repeat("1,", 200) + `1]]}`, websocket.CloseMessageTooBig, ""},
		{"model error", `{"x": [[1, 2]], "k": [99]}`, websocket.CloseInternalServerErr, "model execution failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := dialWS(t, url)
			conn.WriteMessage(websocket.TextMessage, []byte(tt.message))
			_, _, err := conn.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != tt.code || !strings.Contains(ce.Text, tt.reason) {
				t.Errorf("read after %s = %v, want close %d with %q", tt.name, err, tt.code, tt.reason)
			}
		})
	}
}

func TestWebSocketRefusedWhileLoading(t *testing.T) {
	url := newHTTPTestServer(t, New(Options{}))
	_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(url, "http")+"/v1/websocket", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade while loading = %v, %v; want 503", resp, err)
	}
	var body struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if body.Error != notReadyMessage {
		t.Errorf("503 body %q", body.Error)
	}
}

// blocker is a predictor that waits until its request's context ends and
// reports that it did.
type blocker struct{ started, cancelled chan error }

func (b blocker) Predict(ctx context.Context, _ map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	b.started <- nil
	<-ctx.Done()
	b.cancelled <- ctx.Err()
	return nil, ctx.Err()
}

func TestWebSocketDisconnectCancelsPredict(t *testing.T) {
	b := blocker{started: make(chan error, 1), cancelled: make(chan error, 1)}
	conn := dialWS(t, wsServer(t, Model{Signature: doublerSignature, Predictor: b}, Options{}))
	conn.WriteMessage(websocket.TextMessage, []byte(`{"x": [[1, 2]], "k": [1]}`))
	<-b.started
	conn.Close()
	select {
	case err := <-b.cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("predict ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("predict still running 10 s after the client left")
	}
}

func TestWebSocketCloseCodeMapping(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{errNotReady, websocket.CloseTryAgainLater},
		{errShuttingDown, websocket.CloseGoingAway},
		{batching.ErrClosed, websocket.CloseTryAgainLater},
		{auth.ErrUnauthenticated, websocket.ClosePolicyViolation},
		{context.Canceled, websocket.CloseNormalClosure},
		{errBodyTooLarge, websocket.ClosePolicyViolation},
		{errors.New("boom"), websocket.CloseInternalServerErr},
	}
	for _, tt := range tests {
		if got := wsCloseCode(tt.err); got != tt.code {
			t.Errorf("wsCloseCode(%v) = %d, want %d", tt.err, got, tt.code)
		}
	}
}
