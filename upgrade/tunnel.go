package upgrade

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	gwebsocket "github.com/gorilla/websocket"
)

// The WebSocket tunnel is written here rather than taken from
// k8s.io/apiserver/pkg/util/proxy.NewTunnelingHandler because that handler
// frames with the HTTP server's 4 KiB buffers (four frames, TLS records and
// writes per 16 KiB of SPDY data: 1.3–1.7× the TLS floor in CPU per byte),
// has no hook to count bytes or time the kubelet's answer, and cannot follow
// redirects. The wire behaviour is the same: the client's 101 is sent only
// after the kubelet's, echoing the kubelet's protocol with the SPDY/3.1+
// prefix, and each write is one binary message.

const (
	wsBufSize = frameBufSize + 16 // a batch of frames plus the WebSocket frame header
	// tunnelReadBufSize is gorilla's smallest read buffer: the largest
	// control frame's payload.
	tunnelReadBufSize = 125
	// closeGrace bounds the close handshake so a dead client cannot hold a session.
	closeGrace = time.Second
)

// writePool shares write buffers between tunnels: a buffer is held only
// while a message is written, so idle sessions hold none.
var writePool sync.Pool

func newUpgrader(protocol string) *gwebsocket.Upgrader {
	return &gwebsocket.Upgrader{
		// A reader just large enough for frame headers and control
		// frames (gorilla's minimum): a payload read into the relay's
		// buffer with nothing buffered goes straight through (bufio), and
		// an idle tunnel holds 125 bytes instead of the HTTP server's
		// 4 KiB reader (0 would reuse it; the server lets go of it once
		// the handler returns) or a 64 KiB one.
		ReadBufferSize:  tunnelReadBufSize,
		WriteBufferSize: wsBufSize,
		WriteBufferPool: &writePool,
		// Callers authenticate with certificates or bearer tokens, never
		// cookies, so a cross-origin page gains nothing; the API server
		// accepts any origin for the same reason.
		CheckOrigin:  func(*http.Request) bool { return true },
		Subprotocols: []string{protocol},
	}
}

// wsConn carries a byte stream in binary WebSocket messages, like client-go's
// TunnelingConnection, which is what the client runs on the other end.
type wsConn struct {
	ws *gwebsocket.Conn
	r  io.Reader // the message being read, if any

	// Read deadline state (newWSConn), used by the reading goroutine only.
	quiet       time.Duration // interval+timeout; 0: no pings
	extendEvery time.Duration
	extended    time.Time

	pinger    *time.Timer // sends the pings (newWSConn); nil without them
	pingEvery time.Duration
	done      chan struct{} // closed by Close: stops the pinger
	closeOnce sync.Once
}

var _ net.Conn = (*wsConn)(nil)

// Read returns bytes of one or more frames of the current message. client-go
// writes each SPDY frame as one message split into 4 KiB WebSocket frames;
// reading on to the end of the message (the sender is writing it now, so
// this does not wait on the peer's next write) gives the kubelet one TLS
// record per message instead of one per 4 KiB frame.
func (c *wsConn) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.r == nil {
			if n > 0 {
				return n, nil
			}
			mt, r, err := c.ws.NextReader()
			if err != nil {
				if gwebsocket.IsCloseError(err, gwebsocket.CloseNormalClosure, gwebsocket.CloseGoingAway, gwebsocket.CloseNoStatusReceived) {
					return 0, io.EOF
				}
				return 0, c.readErr(err)
			}
			c.heard()
			if mt != gwebsocket.BinaryMessage {
				continue // the tunnel is binary only; client-go sends nothing else
			}
			c.r = r
		}
		m, err := c.r.Read(p[n:])
		n += m
		if errors.Is(err, io.EOF) {
			c.r = nil
			continue
		}
		if err != nil {
			return n, c.readErr(err)
		}
	}
	return n, nil
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(gwebsocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close sends a close frame, bounded by closeGrace, then closes the connection.
func (c *wsConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if c.done != nil {
			close(c.done)
		}
		if c.pinger != nil {
			c.pinger.Stop()
		}
		_ = c.ws.WriteControl(gwebsocket.CloseMessage, gwebsocket.FormatCloseMessage(gwebsocket.CloseNormalClosure, ""), time.Now().Add(closeGrace))
		err = c.ws.Close()
	})
	return err
}

func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error      { return c.ws.NetConn().SetDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
