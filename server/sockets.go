package server

import (
	"context"
	"sync"

	"github.com/gorilla/websocket"
)

// socketTracker keeps the WebSocket connections in flight, which
// http.Server.Shutdown does not track once they are hijacked, so that a
// shutdown can drain them and, past its grace period, close them.
type socketTracker struct {
	draining  chan struct{} // closed by drain
	drainOnce sync.Once

	mu      sync.Mutex // guards the following
	conns   map[*websocket.Conn]struct{}
	changed chan struct{} // closed and replaced whenever a connection leaves
}

func newSocketTracker() *socketTracker {
	return &socketTracker{
		draining: make(chan struct{}),
		conns:    make(map[*websocket.Conn]struct{}),
		changed:  make(chan struct{}),
	}
}

// add registers conn; it fails once the tracker drains, and the caller
// must then close conn.
func (t *socketTracker) add(conn *websocket.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.draining:
		return false
	default:
	}
	t.conns[conn] = struct{}{}
	return true
}

// remove unregisters conn.
func (t *socketTracker) remove(conn *websocket.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, conn)
	close(t.changed)
	t.changed = make(chan struct{})
}

// drain refuses new connections and closes the draining channel, which
// the connections watch. It is idempotent.
func (t *socketTracker) drain() {
	t.drainOnce.Do(func() {
		t.mu.Lock()
		close(t.draining)
		t.mu.Unlock()
	})
}

// wait returns true once no connection is left, false if ctx ends first.
func (t *socketTracker) wait(ctx context.Context) bool {
	for {
		t.mu.Lock()
		n, changed := len(t.conns), t.changed
		t.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// closeAll closes the network connection under every WebSocket left, which
// ends their handlers' reads and writes.
func (t *socketTracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for conn := range t.conns {
		conn.NetConn().Close()
	}
}

// requestTracker counts the requests in flight that passed the drain check,
// so a shutdown can keep answering 503 to new ones, which tells load
// balancers to stop sending, until those are done.
type requestTracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while nobody waits
}

func (t *requestTracker) begin() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *requestTracker) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
}

// wait returns true once no request is in flight, false if ctx ends first.
func (t *requestTracker) wait(ctx context.Context) bool {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return true
	}
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return true
	case <-ctx.Done():
		return false
	}
}
