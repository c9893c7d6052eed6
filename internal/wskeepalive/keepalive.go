// Package wskeepalive keeps WebSocket connections alive and drops silent
// peers, for every WebSocket endpoint of the server.
package wskeepalive

import (
	"context"
	"time"

	"github.com/gorilla/websocket"
)

// Run pings conn every interval until ctx ends or a ping fails, and makes
// the connection's reads fail when the peer has answered no ping (nor sent
// anything) for two intervals. It must run while another goroutine reads
// conn: gorilla/websocket handles pongs inside reads. Control frames may be
// written concurrently with the connection's single writer.
func Run(ctx context.Context, conn *websocket.Conn, interval time.Duration) {
	conn.SetReadDeadline(time.Now().Add(2 * interval))
	conn.SetPongHandler(func(string) error {
		return conn.SetReadDeadline(time.Now().Add(2 * interval))
	})
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(interval)); err != nil {
				return
			}
		}
	}
}
