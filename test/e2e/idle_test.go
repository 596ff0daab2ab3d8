package e2e

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
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

var garbage []byte

// TestIdleMemoryReturned: a quiet gateway collects and returns its free
// heap to the OS (package memreturn), /metrics counts each return and the
// bytes returned, and open sessions, SPDY and tunnel, carry every byte
// intact across the returns.
func TestIdleMemoryReturned(t *testing.T) {
	e := newEnv(t, func(o *options.Options) {
		o.Memory.ReturnInterval = 50 * time.Millisecond
		o.Memory.ReturnMinBytes = 1 << 20
	})
	var forwards []*forward
	for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
		f := startForward(t, dialer(t, kind, e.cfg, e.pfURL("", "hash")), hashPort)
		defer f.stop()
		forwards = append(forwards, f)
	}
	returns := func() (n, returned float64) {
		m := e.scrape(t)
		return m.value("pfgateway_memory_returns_total", nil), m.value("pfgateway_memory_returned_bytes_total", nil)
	}
	for round := range 3 {
		for i, f := range forwards {
			if _, err := transferAll(t, 1, f.dial, 1<<20, 1<<20); err != nil {
				t.Fatalf("round %d, forward %d: %v", round, i, err)
			}
		}
		n0, b0 := returns()
		for range 32 {
			garbage = make([]byte, 1<<20) // what a busy spell leaves behind
		}
		garbage = nil
		eventually(t, 20*time.Second, "the quiet gateway's free heap returned", func() bool {
			n, b := returns()
			return n > n0 && b >= b0+16<<20
		})
	}
	for i, f := range forwards {
		if _, err := transferAll(t, 1, f.dial, 4<<20, 4<<20); err != nil {
			t.Fatalf("after the returns, forward %d: %v", i, err)
		}
	}
}
