package netconn

// Idle input buffers: given back while a connection waits.
//
// crypto/tls keeps, for a connection's whole life, an input buffer grown
// to the largest records it has read (it doubles as it grows: ≈ 40 KiB
// once a stream of 16 KiB records has passed) and a handshake buffer. Over
// an idle session that once moved data that is ≈ 80 KiB of its ≈ 170 KiB
// (BENCHMARKS.md, "Idle-session memory", step 12). crypto/tls has no way
// to give the buffers back; ReleaseInput does, for a connection whose
// buffers hold no byte, by setting them to their zero values under the
// connection's input lock: what crypto/tls's next Read finds is then what
// it finds on a fresh connection, and it grows them again as records come.
//
// Reaching unexported fields is a last resort, bounded here: the fields are
// found by name and type with reflect when the program starts, and if this
// Go's crypto/tls does not have them as expected ReleaseInput does nothing
// (TestReleaseInput then fails, so a Go upgrade that changes them is seen).

import (
	"bytes"
	"crypto/tls"
	"reflect"
	"sync"
	"time"
	"unsafe"
)

// keepInput is the buffer capacity ReleaseInput leaves alone. A small
// record, such as a ping, grows crypto/tls's input buffer to about 576
// bytes; giving that back would have the next ping allocate it again, and
// at client-go's 5 s pings that churn (≈ 14 KiB a minute per idle
// session) grew the heap toward the GC's goal while nothing moved. The
// buffers a stream of full records leaves (16 KiB and more) still go.
const keepInput = 2 << 10

// tlsInput holds the offsets of the tls.Conn fields ReleaseInput resets.
var tlsInput = func() (l struct {
	ok                     bool
	in, raw, input, handsh uintptr
}) {
	t := reflect.TypeFor[tls.Conn]()
	field := func(name string, typ reflect.Type) (uintptr, bool) {
		f, ok := t.FieldByName(name)
		return f.Offset, ok && len(f.Index) == 1 && f.Type == typ
	}
	in, ok1 := t.FieldByName("in")
	var ok2 bool
	if ok1 && in.Type.Kind() == reflect.Struct && in.Type.NumField() > 0 {
		// The input lock: halfConn embeds a sync.Mutex first.
		mu := in.Type.Field(0)
		ok2 = mu.Anonymous && mu.Offset == 0 && mu.Type == reflect.TypeFor[sync.Mutex]()
	}
	var ok3, ok4, ok5 bool
	l.raw, ok3 = field("rawInput", reflect.TypeFor[bytes.Buffer]())
	l.input, ok4 = field("input", reflect.TypeFor[bytes.Reader]())
	l.handsh, ok5 = field("hand", reflect.TypeFor[bytes.Buffer]())
	l.in = in.Offset
	l.ok = ok1 && ok2 && ok3 && ok4 && ok5
	return l
}()

// ReleaseInput gives back c's input and handshake buffers if they hold no
// byte, are larger than a small record needs and no Read is running, and
// reports whether it did. Call it only
// between reads on a connection whose handshake is complete.
func ReleaseInput(c *tls.Conn) bool {
	if !tlsInput.ok || c == nil {
		return false
	}
	p := unsafe.Pointer(c)
	mu := (*sync.Mutex)(unsafe.Add(p, tlsInput.in))
	if !mu.TryLock() {
		return false // a Read is running: not idle
	}
	defer mu.Unlock()
	raw := (*bytes.Buffer)(unsafe.Add(p, tlsInput.raw))
	input := (*bytes.Reader)(unsafe.Add(p, tlsInput.input))
	hand := (*bytes.Buffer)(unsafe.Add(p, tlsInput.handsh))
	if raw.Len() != 0 || input.Len() != 0 || hand.Len() != 0 {
		return false // part of a record, or bytes not yet read: kept
	}
	if raw.Cap()+hand.Cap() <= keepInput {
		return false // a small record's: kept for the next one
	}
	*raw, *input, *hand = bytes.Buffer{}, bytes.Reader{}, bytes.Buffer{}
	return true
}

// TLS is a TLS connection over a Conn, as the relay's idle reads use it
// (relay.Idle): before it waits, it gives crypto/tls's idle buffers back.
type TLS struct {
	tc *tls.Conn
	nc *Conn
}

// IdleOf is c's TLS if c is a *tls.Conn over a Conn that can wait; nil
// otherwise.
func IdleOf(c any) *TLS {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	if nc := Of(tc); nc != nil && nc.CanIdle() {
		return &TLS{tc: tc, nc: nc}
	}
	return nil
}

// SetReadDeadline sets the TLS connection's read deadline.
func (t *TLS) SetReadDeadline(d time.Time) error { return t.tc.SetReadDeadline(d) }

// WaitReadable releases the connection's idle buffers, then waits as
// Conn.WaitReadable does. Only the connection's reader may call it.
func (t *TLS) WaitReadable() error {
	ReleaseInput(t.tc)
	return t.nc.WaitReadable()
}
