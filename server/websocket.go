package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/codes"

	"github.com/modelserver/modelserver/codec"
	"github.com/modelserver/modelserver/internal/requestid"
	"github.com/modelserver/modelserver/internal/wskeepalive"
	"github.com/modelserver/modelserver/telemetry"
	"github.com/modelserver/modelserver/tensor"
)

// WebSocket close codes (RFC 6455 §7.4.1) the server sends.
const (
	closeNormal     = websocket.CloseNormalClosure     // 1000: the client closed
	closeGoingAway  = websocket.CloseGoingAway         // 1001: the server is shutting down
	closeBadMessage = websocket.ClosePolicyViolation   // 1008: a message that is not a valid request
	closeTooBig     = websocket.CloseMessageTooBig     // 1009: a message above the size limit
	closeModelError = websocket.CloseInternalServerErr // 1011: the model failed
	closeTryAgain   = websocket.CloseTryAgainLater     // 1013: overload (queue full)
	maxCloseReason  = 123                              // a close frame's payload is at most 125 bytes
)

// Defaults of the WebSocket transport.
const (
	// DefaultWebSocketMaxMessageBytes is Truss's WS_MAX_MSG_SZ_BYTES.
	DefaultWebSocketMaxMessageBytes = 100 << 20
	// DefaultWebSocketPingInterval is how often the server pings; a peer
	// that has not answered by the next ping is dropped (uvicorn's 20 s).
	DefaultWebSocketPingInterval = 20 * time.Second
)

// wsCloseCode maps a request's error to the close code that ends the
// connection. It is the WebSocket counterpart of httpError.
func wsCloseCode(err error) int {
	if errors.Is(err, errShuttingDown) {
		return closeGoingAway
	}
	switch e := httpError(err, 0); {
	case e.status == http.StatusBadRequest || e.status == http.StatusRequestEntityTooLarge || e.status == http.StatusUnauthorized:
		return closeBadMessage
	case e.status == http.StatusTooManyRequests || e.status == http.StatusServiceUnavailable:
		return closeTryAgain
	case e.status == StatusClientClosedRequest:
		return closeNormal
	}
	return closeModelError
}

var wsUpgrader = websocket.Upgrader{
	// Model servers are called by programs, not pages; Origin is not a
	// meaningful check here, and authentication covers the route.
	CheckOrigin: func(*http.Request) bool { return true },
}

// wsMessage is one message read from the client.
type wsMessage struct {
	frameType int
	data      []byte
}

// handleWebSocket serves /v1/websocket: every message is a predict request,
// a binary frame holding msgpack, a text frame JSON, answered in the same
// encoding. A streaming model answers with one frame per chunk and then an
// empty map ({} or msgpack 0x80) that ends the answer.
//
// The reading goroutine only reads, and cancels the connection's context when
// the client goes away, which reaches any predict in flight; this goroutine
// is the only one that writes data frames (pings use WriteControl, which
// gorilla/websocket allows concurrently).
//
// When the server drains, a connection is closed with 1001 once its current
// message is answered; past the grace period the message in flight is
// cancelled and the connection closed with 1001 too.
func (s *Server) handleWebSocket(w http.ResponseWriter, r *http.Request) {
	setRoute(r, "websocket")
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()
	m, err := s.readyModel()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The upgrader writes only the headers it is given: echo the request id.
	echo := http.Header{}
	for _, h := range []string{requestid.Header, requestid.HeaderBaseten} {
		if v := w.Header().Get(h); v != "" {
			echo.Set(h, v)
		}
	}
	conn, err := wsUpgrader.Upgrade(w, r, echo)
	if err != nil {
		return // the upgrader has answered the client
	}
	defer conn.Close()
	if !s.sockets.add(conn) {
		s.closeWebSocket(conn, closeGoingAway, httpError(errShuttingDown, 0).message)
		return
	}
	defer s.sockets.remove(conn)
	conn.SetReadLimit(s.opts.WebSocketMaxMessageBytes)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	messages := make(chan wsMessage)
	readErr := make(chan error, 1)
	go func() {
		defer cancel()
		for {
			frameType, data, err := conn.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			select {
			case messages <- wsMessage{frameType, data}:
			case <-ctx.Done():
				return
			}
		}
	}()
	go wskeepalive.Run(ctx, conn, s.opts.WebSocketPingInterval)

	for {
		var msg wsMessage
		select {
		case msg = <-messages:
		case <-readErr:
			// A message over the read limit has already been answered by
			// gorilla/websocket with close 1009; other errors are the
			// client leaving.
			return
		case <-s.sockets.draining:
			s.closeWebSocket(conn, closeGoingAway, httpError(errShuttingDown, 0).message)
			return
		case <-ctx.Done():
			if !clientGone(ctx) {
				s.closeWebSocket(conn, closeGoingAway, httpError(errShuttingDown, 0).message)
			}
			return
		}
		if err := s.answerWebSocket(ctx, conn, m, msg); err != nil {
			if ctx.Err() != nil {
				err = context.Cause(ctx) // the client left, or the grace period ran out
			}
			code := wsCloseCode(err)
			s.closeWebSocket(conn, code, httpError(err, s.opts.WebSocketMaxMessageBytes).message)
			return
		}
	}
}

func (s *Server) answerWebSocket(ctx context.Context, conn *websocket.Conn, m *loadedModel, msg wsMessage) (err error) {
	ctx, span := s.tracer.Start(ctx, telemetry.SpanWebSocket)
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	binary := msg.frameType == websocket.BinaryMessage
	inputs, format, err := m.decode(msg.data, binary)
	if err != nil {
		return err
	}
	ctx, cancel := s.withPredictTimeout(ctx)
	defer cancel()
	send := func(out map[string]tensor.Tensor) error {
		payload, err := codec.EncodeTensors(out, m.outputNames, format)
		if err != nil {
			return err
		}
		return conn.WriteMessage(msg.frameType, payload)
	}
	if m.Streamer == nil {
		out, err := m.Predictor.Predict(ctx, inputs)
		if err != nil {
			return err
		}
		return send(out)
	}
	if err := m.Streamer.Stream(ctx, inputs, send); err != nil {
		return err
	}
	end := []byte("{}")
	if binary {
		end = []byte{0x80} // an empty msgpack map
	}
	return conn.WriteMessage(msg.frameType, end)
}

func (s *Server) closeWebSocket(conn *websocket.Conn, code int, reason string) {
	if len(reason) > maxCloseReason {
		reason = reason[:maxCloseReason]
	}
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
}
