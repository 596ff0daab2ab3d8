package upgrade

import (
	"net"
	"net/http"
	"sync"
	"time"

	gwebsocket "github.com/gorilla/websocket"

	"github.com/pfgateway/pfgateway/netconn"
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
	// tunnelReadBufSize is gorilla's smallest read buffer: the largest
	// control frame's payload.
	tunnelReadBufSize = 125
	// closeGrace bounds the close handshake so a dead client cannot hold a session.
	closeGrace = time.Second
)

// writePool is gorilla's write buffer pool. gorilla writes only the
// handshake (wsWriter writes the frames), so it never takes a buffer; with
// no pool it would keep the HTTP server's 4 KiB writer for good.
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
		WriteBufferPool: &writePool,
		// Callers authenticate with certificates or bearer tokens, never
		// cookies, so a cross-origin page gains nothing; the API server
		// accepts any origin for the same reason.
		CheckOrigin:  func(*http.Request) bool { return true },
		Subprotocols: []string{protocol},
	}
}

// wsConn carries a byte stream in binary WebSocket messages, like client-go's
// TunnelingConnection, which is what the client runs on the other end. It
// reads with wsReader and writes with wsWriter; gorilla did the handshake.
type wsConn struct {
	raw  net.Conn // under the WebSocket: what rd reads and wr writes
	rd   *wsReader
	wr   *wsWriter
	idle *netconn.TLS // raw, for the relay's idle reads; nil if it cannot wait

	// Read deadlines (liveness.go), used by the reading goroutine only.
	quiet       time.Duration // interval+timeout; 0: no pings
	extendEvery time.Duration
	extended    time.Time // when the client was last heard, to extendEvery
	idleAt      time.Time // the deadline the relay asked for (SetReadDeadline)
	applied     time.Time // the deadline on raw

	pinger    *time.Timer // sends the pings (newWSConn); nil without them
	pingEvery time.Duration
	done      chan struct{} // closed by Close: stops the pinger
	closeOnce sync.Once
}

var _ net.Conn = (*wsConn)(nil)

// Read returns bytes of one or more messages: it reads on to the end of the
// current message (client-go writes each SPDY frame as one message split
// into 4 KiB WebSocket frames, and is writing it now) so the kubelet gets
// one TLS record per message instead of one per 4 KiB frame. A read that
// times out can be retried: nothing read is lost.
func (c *wsConn) Read(p []byte) (int, error) {
	n, err := c.rd.Read(p)
	if err != nil {
		err = c.readErr(err)
	}
	return n, err
}

// rawReader is what rd reads: raw, noting that the client was heard.
type rawReader wsConn

func (r *rawReader) Read(p []byte) (int, error) {
	n, err := r.raw.Read(p)
	if n > 0 {
		(*wsConn)(r).heard()
	}
	return n, err
}

// wsControl, on the reading goroutine. The answers are best effort, with
// gorilla's own bound, as its default handlers do.
func (c *wsConn) onPing(payload []byte) {
	_ = c.wr.writeControl(gwebsocket.PongMessage, payload, time.Now().Add(closeGrace))
}

func (c *wsConn) onPong() {} // heard already, as every byte is

func (c *wsConn) onClose(code int) {
	_ = c.wr.writeControl(gwebsocket.CloseMessage, gwebsocket.FormatCloseMessage(code, ""), time.Now().Add(closeGrace))
}

func (c *wsConn) onProtocolError(reason string) {
	data := gwebsocket.FormatCloseMessage(gwebsocket.CloseProtocolError, reason)
	_ = c.wr.writeControl(gwebsocket.CloseMessage, data, time.Now().Add(closeGrace))
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.wr.writeMessage(p); err != nil {
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
		_ = c.wr.writeControl(gwebsocket.CloseMessage, gwebsocket.FormatCloseMessage(gwebsocket.CloseNormalClosure, ""), time.Now().Add(closeGrace))
		err = c.raw.Close()
	})
	return err
}

func (c *wsConn) LocalAddr() net.Addr           { return c.raw.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr          { return c.raw.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error { return c.raw.SetDeadline(t) }

// SetReadDeadline bounds reads; the liveness deadline, if earlier, still holds.
func (c *wsConn) SetReadDeadline(t time.Time) error  { c.idleAt = t; return c.applyDeadline() }
func (c *wsConn) SetWriteDeadline(t time.Time) error { c.wr.setWriteDeadline(t); return nil }
