package upgrade

import (
	"errors"
	"fmt"
	"net"
	"time"

	gwebsocket "github.com/gorilla/websocket"
)

// Liveness configures the pings that find a dead peer of an upgraded
// session, instead of waiting for a write to it to fail (which, for a peer
// that vanished without a FIN or RST, TCP reports after many minutes).
type Liveness struct {
	// KubeletPingInterval and KubeletPingTimeout: the gateway's own SPDY
	// pings to the kubelet (stream-aware relay only; relay.Options).
	KubeletPingInterval, KubeletPingTimeout time.Duration
	// WebSocketPingInterval and WebSocketPingTimeout: WebSocket ping frames
	// to a tunnel client, which must be heard from (a pong or any frame)
	// within interval+timeout. Zero interval: no pings, no read deadline.
	WebSocketPingInterval, WebSocketPingTimeout time.Duration
}

// ErrWebSocketPingTimeout ends a tunnel whose client sent nothing, not
// even the pong to a ping, for WebSocketPingInterval+WebSocketPingTimeout.
var ErrWebSocketPingTimeout = errors.New("the WebSocket client answered no ping")

// newWSConn wraps an upgraded tunnel and starts its pings; the caller must
// not have started reading (read deadlines belong to the reader).
func newWSConn(ws *gwebsocket.Conn, interval, timeout time.Duration) *wsConn {
	c := &wsConn{ws: ws, done: make(chan struct{})}
	if interval <= 0 {
		return c
	}
	c.quiet = interval + timeout
	c.extendEvery = timeout / 4
	c.heard()
	// gorilla calls both handlers from the reading goroutine, inside
	// NextReader or Read, which is where gorilla allows SetReadDeadline.
	ws.SetPongHandler(func(string) error { c.heard(); return nil })
	answer := ws.PingHandler() // the default: pong back, as the peer expects
	ws.SetPingHandler(func(data string) error { c.heard(); return answer(data) })
	c.pingEvery = interval
	// Armed only once c.pinger is set: ping uses it.
	c.pinger = time.AfterFunc(time.Hour, c.ping)
	c.pinger.Reset(interval)
	return c
}

// heard pushes the read deadline out after a frame from the client. It runs
// on the reading goroutine only; extendEvery spares a deadline update for
// every message of a busy tunnel.
func (c *wsConn) heard() {
	if c.quiet == 0 {
		return
	}
	now := time.Now()
	if now.Sub(c.extended) < c.extendEvery {
		return
	}
	c.extended = now
	_ = c.ws.SetReadDeadline(now.Add(c.quiet))
}

// ping sends a ping, and again every interval until the tunnel closes: a
// timer, not a goroutine, so an idle tunnel holds no stack for it.
// WriteControl may run alongside the relay's data writer (gorilla's
// concurrency rule). It gets no write deadline: gorilla makes a timed-out
// write fatal to the connection, and a client that reads slowly is alive.
// The read deadline is what ends a silent client.
func (c *wsConn) ping() {
	select {
	case <-c.done:
		return
	default:
	}
	if err := c.ws.WriteControl(gwebsocket.PingMessage, nil, time.Time{}); err != nil {
		return // the connection is broken or closing: the reader sees it
	}
	c.pinger.Reset(c.pingEvery) // after a Close, the next tick sees done and stops
}

// readErr names a read that timed out for lack of pongs.
func (c *wsConn) readErr(err error) error {
	var ne net.Error
	if c.quiet > 0 && errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: nothing received for %v", ErrWebSocketPingTimeout, c.quiet)
	}
	return err
}
