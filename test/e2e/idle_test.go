package e2e

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// TestIdleReadersWaitShallow: once a session is idle its readers have
// handed over to fresh goroutines waiting in netconn's WaitReadable, with
// small stacks: both readers, over SPDY and over the WebSocket tunnel
// (whose client side wsReader reads). Bytes flow intact again after every
// wait, and the waits end with the session.
func TestIdleReadersWaitShallow(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		kind dialerKind
		want int
	}{
		{"spdy", dialSPDY, 2},
		{"tunnel", dialTunnel, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startForward(t, dialer(t, tc.kind, e.cfg, e.pfURL("", "hash")), hashPort)
			for round := range 3 {
				if _, err := transferAll(t, 1, f.dial, 1<<20, 1<<20); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				eventually(t, 10*time.Second, "the idle session's readers waiting in WaitReadable", func() bool {
					return waitingReaders() == tc.want
				})
			}
			f.stop()
			eventually(t, 10*time.Second, "no reader waiting after the session", func() bool {
				return waitingReaders() == 0
			})
		})
	}
}

// waitingReaders counts the goroutines waiting in netconn's WaitReadable:
// the frame appears once in each one's stack.
func waitingReaders() int {
	buf := make([]byte, 8<<20)
	return bytes.Count(buf[:runtime.Stack(buf, true)], []byte("netconn.(*Conn).WaitReadable("))
}
