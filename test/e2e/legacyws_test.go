package e2e

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	gwebsocket "github.com/gorilla/websocket"
)

// The legacy WebSocket channel protocol, as Python, JavaScript and C#
// clients speak it: GET …/portforward?ports=P with subprotocol
// v4.channel.k8s.io (binary messages, first byte the channel) or
// v4.base64.channel.k8s.io (text messages, channel as an ASCII digit, base64
// payload). For the first port, channel 0 carries data and channel 1 errors;
// the server starts each channel with the port, 2 bytes little endian.
const (
	v4Binary = "v4.channel.k8s.io"
	v4Base64 = "v4.base64.channel.k8s.io"
	// legacyMsgLen caps the payload of one message a legacyConn writes.
	legacyMsgLen = 32 << 10
)

// legacyConn is the first port of a legacy WebSocket session as a net.Conn.
// It has no CloseWrite: v4 has no half-close.
type legacyConn struct {
	ws     *gwebsocket.Conn
	base64 bool
	port   uint16

	pending []byte    // channel-0 data not yet read
	prefix  [2][]byte // port prefix bytes still expected per channel
	errText []byte    // channel-1 bytes after the prefix

	wmu sync.Mutex // one writer at a time, as gorilla requires
}

var _ net.Conn = (*legacyConn)(nil)

// dialLegacy opens a legacy session for one port, sending h with the
// handshake. On a refused handshake it returns the HTTP response and the error.
func (e *env) dialLegacy(pod string, port int, subprotocol string, h http.Header) (*legacyConn, *http.Response, error) {
	u := e.pfURL("", pod)
	u.Scheme = "wss"
	u.RawQuery = url.Values{"ports": {strconv.Itoa(port)}}.Encode()
	d := gwebsocket.Dialer{
		TLSClientConfig:  e.tlsConfig(true),
		Subprotocols:     []string{subprotocol},
		HandshakeTimeout: 30 * time.Second,
		ReadBufferSize:   64 << 10,
		WriteBufferSize:  64 << 10,
	}
	ws, resp, err := d.Dial(u.String(), h)
	if err != nil {
		return nil, resp, err
	}
	if got := ws.Subprotocol(); got != subprotocol {
		_ = ws.Close()
		return nil, resp, fmt.Errorf("negotiated subprotocol %q, want %q", got, subprotocol)
	}
	ws.SetReadLimit(1 << 20)
	c := &legacyConn{ws: ws, base64: subprotocol == v4Base64, port: uint16(port)}
	c.prefix[0], c.prefix[1] = []byte{}, []byte{}
	return c, resp, nil
}

// next reads one message and files its payload under its channel.
func (c *legacyConn) next() error {
	mt, msg, err := c.ws.ReadMessage()
	if err != nil {
		return err
	}
	if len(msg) == 0 {
		return nil
	}
	ch := msg[0]
	data := msg[1:]
	if c.base64 {
		if mt != gwebsocket.TextMessage {
			return fmt.Errorf("binary message on a base64 session")
		}
		ch -= '0'
		if data, err = base64.StdEncoding.DecodeString(string(data)); err != nil {
			return fmt.Errorf("channel %d: bad base64: %w", ch, err)
		}
	} else if mt != gwebsocket.BinaryMessage {
		return fmt.Errorf("text message on a binary session")
	}
	if ch > 1 {
		return fmt.Errorf("message on channel %d; only port 0's channels 0 and 1 exist", ch)
	}
	// Strip and check the port prefix each channel starts with.
	if p := c.prefix[ch]; len(p) < 2 {
		k := min(2-len(p), len(data))
		c.prefix[ch] = append(p, data[:k]...)
		data = data[k:]
		if len(c.prefix[ch]) == 2 {
			if got := binary.LittleEndian.Uint16(c.prefix[ch]); got != c.port {
				return fmt.Errorf("channel %d starts with port %d, want %d", ch, got, c.port)
			}
		}
	}
	if ch == 0 {
		c.pending = append(c.pending, data...)
	} else {
		c.errText = append(c.errText, data...)
	}
	return nil
}

func (c *legacyConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if len(c.errText) > 0 {
			return 0, fmt.Errorf("error channel: %s", c.errText)
		}
		if err := c.next(); err != nil {
			if len(c.errText) > 0 {
				return 0, errors.Join(fmt.Errorf("error channel: %s", c.errText), err)
			}
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write sends p on channel 0 in messages of at most 32 KiB.
func (c *legacyConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	written := 0
	for len(p) > 0 {
		b := p[:min(len(p), legacyMsgLen)]
		var err error
		if c.base64 {
			err = c.ws.WriteMessage(gwebsocket.TextMessage, []byte("0"+base64.StdEncoding.EncodeToString(b)))
		} else {
			msg := make([]byte, 1+len(b))
			copy(msg[1:], b)
			err = c.ws.WriteMessage(gwebsocket.BinaryMessage, msg)
		}
		if err != nil {
			return written, err
		}
		written += len(b)
		p = p[len(b):]
	}
	return written, nil
}

// portsSeen says whether both channels started with the port, as the
// kubelet sends it before any data.
func (c *legacyConn) portsSeen() bool { return len(c.prefix[0]) == 2 && len(c.prefix[1]) == 2 }

// Close sends a close frame, bounded, then closes the connection. gorilla
// allows WriteControl concurrently with a blocked writer, which Close must
// unblock, so it does not take wmu.
func (c *legacyConn) Close() error {
	_ = c.ws.WriteControl(gwebsocket.CloseMessage, gwebsocket.FormatCloseMessage(gwebsocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return c.ws.Close()
}

func (c *legacyConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *legacyConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *legacyConn) SetDeadline(t time.Time) error      { return c.ws.NetConn().SetDeadline(t) }
func (c *legacyConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *legacyConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
