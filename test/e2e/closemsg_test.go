package e2e

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
)

// liveForward is a session opened with one of client-go's dialers and driven
// by hand (as policy_test.go does): one forwarded connection that moved
// bytes and ended, and one still open, whose error stream is read for the
// gateway's message when it closes the session.
type liveForward struct {
	kind dialerKind
	conn httpstream.Connection
	open *pair
}

// openLive opens a session to pod with kind's dialer, runs one 256 KiB
// exchange on a first forwarded connection and leaves a second one open.
func (e *env) openLive(t *testing.T, kind dialerKind, pod string) *liveForward {
	t.Helper()
	conn, _, err := dialer(t, kind, e.cfg, e.pfURL("", pod)).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		t.Fatalf("%s session to %s: %v", kind, pod, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	first := openPair(t, conn, hashPort, 0)
	if _, err := transfer(t, first.conn(), 256<<10, 256<<10); err != nil {
		t.FailNow()
	}
	return &liveForward{kind: kind, conn: conn, open: openPair(t, conn, hashPort, 1)}
}

// expectMessage waits up to within for want on the open forwarded
// connection's error stream, then for the session's connection to close;
// it returns how long the message took.
func (l *liveForward) expectMessage(t *testing.T, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case r := <-l.open.errText:
		if r.text != want {
			t.Errorf("%s: error stream of the open forward = %q (%v), want %q", l.kind, r.text, r.err, want)
		}
	case <-time.After(within):
		t.Errorf("%s: no message on the open forward's error stream within %v (want %q)", l.kind, within, want)
		return within
	}
	d := time.Since(start)
	if n, err := l.open.data.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("%s: the open forward's data stream gave %d bytes, %v; want it ended", l.kind, n, err)
	}
	select {
	case <-l.conn.CloseChan():
	case <-time.After(10 * time.Second):
		t.Errorf("%s: the session's connection is still open 10s after the message", l.kind)
	}
	return d
}

// expectOpen checks the session still forwards: a new forwarded connection
// moves bytes both ways and nothing came on the open one's error stream.
func (l *liveForward) expectOpen(t *testing.T, requestID int) {
	t.Helper()
	select {
	case r := <-l.open.errText:
		t.Fatalf("%s: the open forward ended: %q %v", l.kind, r.text, r.err)
	default:
	}
	p := openPair(t, l.conn, hashPort, requestID)
	if _, err := transfer(t, p.conn(), 256<<10, 256<<10); err != nil {
		t.FailNow()
	}
}
