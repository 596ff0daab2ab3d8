package netconn

// Idle reads: a reader waits for bytes with a small stack.
//
// A goroutine blocked in a read through crypto/tls and the relay above it
// keeps a stack of 8 KiB: the runtime halves a stack at a GC only when less
// than a quarter of it is in use, and that read uses more. An idle session
// has two such readers. The relay therefore reads an empty connection with
// a read deadline; when it passes, crypto/tls returns the timeout and keeps
// what it has buffered (a timeout is not fatal to a tls.Conn), and the
// reader hands over to a fresh goroutine that waits in WaitReadable, with
// the runtime's small starting stack, and then reads on (relay.read).
//
// Waiting for the socket is correct because crypto/tls reads its
// connection only when it lacks bytes of the record it is assembling: when
// a read times out, the bytes it needs can only come from the socket.

import (
	"net"
	"syscall"
)

func rawOf(c net.Conn) syscall.RawConn {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// CanIdle reports whether the connection is a socket WaitReadable can wait on.
func (c *Conn) CanIdle() bool { return c.rc != nil }

// WaitReadable returns once the connection has bytes to read, is at its
// end, or is closed (the read that follows tells which); it may also
// return early, so the read that follows must not block for long. Only
// the connection's reader may call it, with no read deadline in the past.
func (c *Conn) WaitReadable() error {
	if c.rc == nil {
		return nil
	}
	c.waited = false
	return c.rc.Read(c.ready)
}

// readable is WaitReadable's check, made once per connection (c.ready) so
// that a wait allocates nothing. The peek runs after the runtime has armed
// its wait (RawRead resets the poller's readiness first), so bytes that
// arrived since the read that timed out are not missed.
func (c *Conn) readable(fd uintptr) bool {
	if c.waited {
		return true // the poller saw the socket readable
	}
	c.waited = true
	_, _, err := syscall.Recvfrom(int(fd), c.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}
