// Joined writes: a system call saved per relayed frame under TLS.
//
// A relayed SPDY DATA frame is an 8-byte header and up to 32 KiB of payload.
// crypto/tls cuts one Write into records of at most 16 KiB from its start
// and writes each record with its own system call, so a 32 KiB frame
// leaves as records of 16 KiB, 16 KiB and 8 bytes: three writes, the last
// one carrying a whole TCP segment's cost for 8 bytes. Writer writes such
// a frame's short remainder first, as its own record, and Conn, the
// connection under the tls.Conn, sends that short record together with
// the next one in a single writev: two system calls per frame, as many as
// the TLS floor's 32 KiB writes. The bytes on the wire, and the records
// the peer decrypts, are the same as before; only their grouping into
// system calls changes.
//
// crypto/tls has no way to batch the records of one Write (it writes each
// as soon as it is sealed, from a buffer it reuses), so the join happens
// below it, and only for a record short enough to copy for free.

package netconn

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"syscall"
)

// maxHeldPlain is the longest remainder Writer sends as a held record.
const maxHeldPlain = 1024

// MaxHeld is the most Conn keeps back: a record of up to maxHeldPlain
// bytes of plaintext with its TLS header, nonce and tag, or that and a
// WebSocket frame header's record before it.
const MaxHeld = maxHeldPlain + 96

// maxRecord is the most plaintext crypto/tls puts in one record once a
// connection has warmed up (its dynamic record sizing starts smaller).
const maxRecord = 16384

// Conn is a connection under a tls.Conn that can join short records with
// the next. Between Hold and Release writes are kept back while they fit
// in MaxHeld bytes together, and sent with the next write (or by Release);
// every other write goes straight through. Writes keep their
// order, whichever goroutine makes them (crypto/tls also writes alerts
// and key updates on its own).
type Conn struct {
	net.Conn

	mu      sync.Mutex
	holding bool
	pending []byte
	buf     *[MaxHeld]byte // from heldBufs between Hold and Release: an idle connection holds none
	arr     [2][]byte
	bufs    net.Buffers // a field, so that writev's argument does not escape per call

	rc     syscall.RawConn // idle.go; nil when not a socket
	ready  func(fd uintptr) bool
	waited bool
	peek   [1]byte
}

// NewConn wraps c.
func NewConn(c net.Conn) *Conn {
	nc := &Conn{Conn: c}
	if nc.rc = rawOf(c); nc.rc != nil {
		nc.ready = nc.readable
	}
	return nc
}

// Of returns the Conn under a *tls.Conn, or nil.
func Of(c any) *Conn {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	nc, _ := tc.NetConn().(*Conn)
	return nc
}

// Write sends p, with whatever record is held before it.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding && len(c.pending)+len(p) <= MaxHeld {
		if c.buf == nil {
			c.buf = heldBufs.Get().(*[MaxHeld]byte)
		}
		if len(c.pending) == 0 {
			c.pending = c.buf[:0]
		}
		c.pending = append(c.pending, p...)
		return len(p), nil
	}
	if len(c.pending) == 0 {
		return c.Conn.Write(p)
	}
	held := len(c.pending)
	c.arr = [2][]byte{c.pending, p}
	c.bufs = c.arr[:]
	n, err := c.bufs.WriteTo(c.Conn)
	c.arr, c.bufs, c.pending = [2][]byte{}, nil, nil
	if n < int64(held) {
		// The held record did not go out whole: the connection is broken
		// for TLS, and the caller learns it now.
		if err == nil {
			err = io.ErrShortWrite
		}
		return 0, err
	}
	return int(n) - held, err
}

// Hold starts keeping a short write back.
func (c *Conn) Hold() {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

// Release stops holding and sends a record still held.
func (c *Conn) Release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	var err error
	if p := c.pending; len(p) > 0 {
		c.pending = nil
		var n int
		n, err = c.Conn.Write(p)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
	}
	if c.buf != nil {
		heldBufs.Put(c.buf)
		c.buf = nil
	}
	return err
}

var heldBufs = sync.Pool{New: func() any { return new([MaxHeld]byte) }}

// Listener wraps every accepted connection in a Conn.
type Listener struct{ net.Listener }

// Accept waits for the next connection.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return NewConn(c), nil
}

// Writer returns the writer for w that sends each long write's short
// remainder together with its first record, when w is a tls.Conn over a
// Conn; otherwise w itself. The caller must not let another write to w
// start before one through Writer ends: a write is two tls.Conn writes.
func Writer(w io.Writer) io.Writer {
	c := Of(w)
	if c == nil {
		return w
	}
	return &writer{tc: w.(*tls.Conn), c: c}
}

type writer struct {
	tc *tls.Conn
	c  *Conn
}

func (w *writer) Write(p []byte) (int, error) {
	head := len(p) % maxRecord
	if len(p) <= maxRecord || head == 0 || head > maxHeldPlain {
		return w.tc.Write(p)
	}
	w.c.Hold()
	n, err := w.tc.Write(p[:head])
	if err == nil {
		var m int
		m, err = w.tc.Write(p[head:])
		n += m
	}
	if rerr := w.c.Release(); err == nil {
		err = rerr
	}
	return n, err
}
