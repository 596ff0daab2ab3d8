package upgrade

import (
	"errors"
	"fmt"
	"net"
	"time"

	gwebsocket "github.com/gorilla/websocket"

	"github.com/pfgateway/pfgateway/netconn"
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
	c := &wsConn{raw: ws.NetConn(), done: make(chan struct{})}
	c.rd = newWSReader((*rawReader)(c), c)
	c.wr = newWSWriter(c.raw)
	c.idle = netconn.IdleOf(c.raw)
	if interval <= 0 {
		return c
	}
	c.quiet = interval + timeout
	c.extendEvery = timeout / 4
	c.heard()
	c.pingEvery = interval
	// Armed only once c.pinger is set: ping uses it.
	c.pinger = time.AfterFunc(time.Hour, c.ping)
	c.pinger.Reset(interval)
	return c
}

// heard pushes the liveness deadline out when bytes come from the client
// (a pong or any frame). It runs on the reading goroutine only;
// extendEvery spares a deadline update for every read of a busy tunnel.
func (c *wsConn) heard() {
	if c.quiet == 0 {
		return
	}
	now := time.Now()
	if now.Sub(c.extended) < c.extendEvery {
		return
	}
	c.extended = now
	_ = c.applyDeadline()
}

// applyDeadline sets raw's read deadline to the earlier of the relay's
// (idle reads) and the liveness one.
func (c *wsConn) applyDeadline() error {
	t := c.idleAt
	if c.quiet > 0 {
		if live := c.liveUntil(); t.IsZero() || live.Before(t) {
			t = live
		}
	}
	if t.Equal(c.applied) {
		return nil
	}
	c.applied = t
	return c.raw.SetReadDeadline(t)
}

// liveUntil is when the client, silent since it was last heard, has used up
// its liveness allowance.
func (c *wsConn) liveUntil() time.Time { return c.extended.Add(c.quiet) }

// WaitReadable waits for the client's next bytes outside a read
// (relay.Idle), until the liveness deadline at the latest, having given
// crypto/tls's idle buffers back.
func (c *wsConn) WaitReadable() error { return c.idle.WaitReadable() }

// ping sends a ping, and again every interval until the tunnel closes: a
// timer, not a goroutine, so an idle tunnel holds no stack for it.
// It takes turns with the relay's data writer (wsWriter) and gets no write
// deadline: a timed-out write is fatal to a TLS connection, and a client
// that reads slowly is alive.
// The read deadline is what ends a silent client.
func (c *wsConn) ping() {
	select {
	case <-c.done:
		return
	default:
	}
	if err := c.wr.writeControl(gwebsocket.PingMessage, nil, time.Time{}); err != nil {
		return // the connection is broken or closing: the reader sees it
	}
	c.pinger.Reset(c.pingEvery) // after a Close, the next tick sees done and stops
}

// readErr names a read that timed out for lack of pongs; another timeout
// is the relay's, and the read can be retried.
func (c *wsConn) readErr(err error) error {
	var ne net.Error
	if c.quiet > 0 && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(c.liveUntil()) {
		return fmt.Errorf("%w: nothing received for %v", ErrWebSocketPingTimeout, c.quiet)
	}
	return err
}
