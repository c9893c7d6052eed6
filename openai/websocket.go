package openai

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/modelserver/modelserver/internal/shutdown"
	"github.com/modelserver/modelserver/internal/wskeepalive"
)

// WebSocket close codes the LLM WebSocket sends (RFC 6455 §7.4.1).
const (
	closeNormal     = websocket.CloseNormalClosure   // the client closed
	closeBadMessage = websocket.CloseUnsupportedData // a binary frame
	closeGoingAway  = websocket.CloseGoingAway       // the server shuts down
)

var wsUpgrader = websocket.Upgrader{
	// Model servers are called by programs, not pages; Origin is not a
	// meaningful check here, and authentication covers the route.
	CheckOrigin: func(*http.Request) bool { return true },
}

// WebSocketHandler serves the LLM over a WebSocket, for /v1/websocket.
//
// Framing: every client message is a text frame holding a predict request
// (the PredictHandler body; "stream" is ignored, answers always stream).
// Requests on one connection run one after another. Each answer is text
// frames of JSON:
//
//	{"type":"delta","index":0,"text":"Hel"}          one per text delta
//	{"type":"done","finish_reasons":["stop"],"usage":{...}}  last, per request
//	{"type":"error","error":{"message",...}}          instead of done
//
// index is the sequence (n > 1 or several prompts interleave). An error
// ends that request, not the connection. A binary frame closes the
// connection with 1003; a message above the size limit with 1009. Before
// a model is set, and once the API drains, the handshake is refused with
// 503. A draining API closes each connection with 1001 once its current
// answer is sent; a shutdown that cancels an answer sends its error frame
// and closes with 1001.
//
// One goroutine reads and cancels the connection's context when the client
// leaves, which aborts the sequences in flight; the handler's goroutine is
// the only one that writes data frames (pings use WriteControl, which
// gorilla/websocket allows concurrently).
func (a *API) WebSocketHandler() http.Handler {
	return http.HandlerFunc(a.handleWebSocket)
}

type wsMessage struct {
	frameType int
	data      []byte
}

func (a *API) handleWebSocket(w http.ResponseWriter, r *http.Request) {
	m, err := a.readyModel()
	if err != nil {
		a.writeTrussError(w, err)
		return
	}
	if !a.trackSocket() {
		a.writeTrussError(w, shutdown.ErrShuttingDown)
		return
	}
	defer a.untrackSocket()
	conn, err := wsUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered the client
	}
	conn.SetReadLimit(a.opts.WebSocketMaxMessageBytes)

	// Deferred in this order so that, on return, the context ends, then the
	// connection closes (unblocking the reader), then both goroutines are
	// waited for.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer conn.Close()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	messages := make(chan wsMessage)
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer cancel()
		for {
			frameType, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			select {
			case messages <- wsMessage{frameType, data}:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		wskeepalive.Run(ctx, conn, a.opts.WebSocketPingInterval)
	}()

	send := func(f wsFrame) error {
		return conn.WriteMessage(websocket.TextMessage, marshalFrame(f))
	}
	for {
		var msg wsMessage
		select {
		case msg = <-messages:
		case <-a.draining:
			closeWebSocket(conn, closeGoingAway, "server shutting down")
			return
		case <-ctx.Done():
			return
		}
		if msg.frameType != websocket.TextMessage {
			closeWebSocket(conn, closeBadMessage, "send requests as JSON text frames")
			return
		}
		if err := a.answerFrames(ctx, m, msg.data, send); err != nil {
			switch {
			case shutdown.Cancelled(ctx):
				closeWebSocket(conn, closeGoingAway, "server shutting down")
			case !errors.Is(err, context.Canceled):
				closeWebSocket(conn, closeNormal, "")
			}
			return
		}
	}
}

func closeWebSocket(conn *websocket.Conn, code int, reason string) {
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
}
