package upgrade

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	gwebsocket "github.com/gorilla/websocket"

	"github.com/pfgateway/pfgateway/netconn"
)

// wsWriter writes the tunnel's frames to its client: each relay write as
// one binary message, and the control frames (pings, pongs, closes). It
// is written here rather than left to gorilla because gorilla copies every
// message into its own buffer, allocates once per message to give that
// buffer back to its pool, and writes to the tls.Conn itself, so a 32 KiB
// SPDY data frame left in three system calls (records of 16 KiB, 16 KiB and
// the 8-byte rest; see netconn). Here the frame header is a record of its
// own, held with the rest's record by netconn.Conn and joined with the
// first full record: two system calls, no copy, no allocation. The
// client reads the same frames; only their TLS records differ.
type wsWriter struct {
	w    io.Writer     // raw through netconn.Writer: joins a long message's short rest
	raw  net.Conn      // the connection under the WebSocket
	held *netconn.Conn // under raw, holding the header's record; nil if raw is not over one

	// lock is one token: one frame at a time, from the relay's writer, the
	// pinger and the reader's answers. A channel, so that a control frame
	// can give up waiting at its deadline, as gorilla's WriteControl does.
	lock chan struct{}
	// deadline is the relay's write deadline (SetWriteDeadline), in
	// UnixNano, 0 for none; applied is what raw has.
	deadline atomic.Int64
	applied  time.Time
	err      error // the first write error (the stream is broken after it), or ErrCloseSent
	hdr      [maxWSHeader]byte
}

var errWSWriteTimeout = errors.New("websocket: timed out waiting to write a control frame")

func newWSWriter(raw net.Conn) *wsWriter {
	w := &wsWriter{w: netconn.Writer(raw), raw: raw, held: netconn.Of(raw), lock: make(chan struct{}, 1)}
	w.lock <- struct{}{}
	return w
}

// writeMessage writes p as one binary message, bounded by the relay's
// write deadline.
func (w *wsWriter) writeMessage(p []byte) error {
	<-w.lock
	defer func() { w.lock <- struct{}{} }()
	var d time.Time
	if ns := w.deadline.Load(); ns != 0 {
		d = time.Unix(0, ns)
	}
	return w.frameLocked(gwebsocket.BinaryMessage, p, d)
}

// writeControl writes a control frame, waiting for the writer until
// deadline at most and bounded by it (none if zero).
func (w *wsWriter) writeControl(op int, payload []byte, deadline time.Time) error {
	wait := 1000 * time.Hour
	if !deadline.IsZero() {
		if wait = time.Until(deadline); wait <= 0 {
			return errWSWriteTimeout
		}
	}
	select {
	case <-w.lock:
	default:
		t := time.NewTimer(wait)
		select {
		case <-w.lock:
			t.Stop()
		case <-t.C:
			return errWSWriteTimeout
		}
	}
	defer func() { w.lock <- struct{}{} }()
	err := w.frameLocked(op, payload[:min(len(payload), maxControlPayload)], deadline)
	if err == nil && op == gwebsocket.CloseMessage {
		w.err = gwebsocket.ErrCloseSent // no frame may follow a close (RFC 6455 5.5.1), as in gorilla
	}
	return err
}

// setWriteDeadline sets the relay's write deadline for the messages that
// follow (a message being written keeps its own, as in gorilla).
func (w *wsWriter) setWriteDeadline(t time.Time) {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	w.deadline.Store(ns)
}

func (w *wsWriter) frameLocked(op int, p []byte, deadline time.Time) error {
	if w.err != nil {
		return w.err
	}
	if !deadline.Equal(w.applied) {
		if err := w.raw.SetWriteDeadline(deadline); err != nil {
			w.err = err
			return err
		}
		w.applied = deadline
	}
	h := w.hdr[:wsHeader(&w.hdr, op, len(p))]
	if w.held != nil {
		w.held.Hold()
	}
	_, err := w.raw.Write(h)
	if err == nil && len(p) > 0 {
		// A split message's Hold and Release inside w.w end the hold with
		// its last record: nothing follows, so the Release below finds
		// nothing held.
		_, err = w.w.Write(p)
	}
	if w.held != nil {
		if rerr := w.held.Release(); err == nil {
			err = rerr
		}
	}
	if err != nil {
		w.err = err // a TLS connection is broken after a failed write
	}
	return err
}

// wsHeader encodes a final, unmasked frame header (a server's) for n
// payload bytes of opcode op into h and returns its length.
func wsHeader(h *[maxWSHeader]byte, op, n int) int {
	h[0] = 0x80 | byte(op)
	switch {
	case n <= 125:
		h[1] = byte(n)
		return 2
	case n <= 0xFFFF:
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
		return 4
	default:
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
		return 10
	}
}
