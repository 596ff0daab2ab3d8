package e2e

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/session"
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

// TestCloseMessages: a session terminated through the admin API, or closed
// by the idle timeout, tells the client why on its open forwarded
// connection's error stream, over SPDY and the WebSocket tunnel; with the
// opaque splice, which has no streams to write on, it is only closed.
func TestCloseMessages(t *testing.T) {
	kinds := []dialerKind{dialSPDY, dialTunnel}
	t.Run("admin terminate", func(t *testing.T) {
		e := newEnv(t)
		for _, kind := range kinds {
			l := e.openLive(t, kind, "hash")
			list := e.listSessions(t)
			if len(list) != 1 {
				t.Fatalf("%d live sessions, want 1", len(list))
			}
			if code, body := e.adminDo(t, http.MethodDelete, "/sessions/"+list[0].ID); code != http.StatusOK {
				t.Fatalf("DELETE: %d %s", code, body)
			}
			l.expectMessage(t, session.MessageTerminated, 10*time.Second)
			e.waitIdle(t)
		}
		e.waitSessions(t, "spdy", "terminated", 1)
		e.waitSessions(t, "websocket", "terminated", 1)
	})
	t.Run("idle timeout", func(t *testing.T) {
		const idle = time.Second
		e := newEnv(t, func(o *options.Options) { o.Limits.SessionIdleTimeout = idle })
		for _, kind := range kinds {
			l := e.openLive(t, kind, "hash")
			start := time.Now()
			l.expectMessage(t, fmt.Sprintf("pfgateway: no traffic in either direction for --session-idle-timeout (%v)", idle), idle+10*time.Second)
			if d := time.Since(start); d < idle/2 {
				t.Errorf("%s: closed %v after its last byte, before the %v idle timeout", kind, d, idle)
			}
		}
		e.waitSessions(t, "spdy", "idle_timeout", 1)
		e.waitSessions(t, "websocket", "idle_timeout", 1)
	})
	t.Run("kubectl prints the message", func(t *testing.T) {
		e := newEnv(t)
		for _, minor := range []int{30, 33} { // SPDY; the WebSocket tunnel first
			bin := kubectlBinary(t, minor)
			addr, run, err := e.kubectlPortForward(t, bin, "hash", hashPort)
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			first, ended := endlessDownload(t, c)
			select {
			case <-first:
			case r := <-ended:
				t.Fatalf("kubectl 1.%d: the download ended before the termination: %v", minor, r.err)
			}
			list := e.listSessions(t)
			if len(list) != 1 {
				t.Fatalf("%d live sessions, want 1", len(list))
			}
			if code, body := e.adminDo(t, http.MethodDelete, "/sessions/"+list[0].ID); code != http.StatusOK {
				t.Fatalf("DELETE: %d %s", code, body)
			}
			if !run.Wait(20 * time.Second) {
				t.Fatalf("kubectl 1.%d still runs 20s after its session was terminated", minor)
			}
			_ = c.Close()
			want := fmt.Sprintf("an error occurred forwarding %s -> %d: %s", addr[strings.LastIndex(addr, ":")+1:], hashPort, session.MessageTerminated)
			if out := run.Stderr.String(); !strings.Contains(out, want) {
				t.Errorf("kubectl 1.%d stderr lacks %q:\n%s", minor, want, out)
			} else {
				t.Logf("kubectl 1.%d: %s", minor, firstLineWith(out, session.MessageTerminated))
			}
			e.waitIdle(t)
		}
	})
	t.Run("opaque splice is only closed", func(t *testing.T) {
		e := newEnv(t, func(o *options.Options) { o.Streams.SpliceMode = options.SpliceOpaque })
		l := e.openLive(t, dialSPDY, "hash")
		list := e.listSessions(t)
		if len(list) != 1 {
			t.Fatalf("%d live sessions, want 1", len(list))
		}
		if code, body := e.adminDo(t, http.MethodDelete, "/sessions/"+list[0].ID); code != http.StatusOK {
			t.Fatalf("DELETE: %d %s", code, body)
		}
		select {
		case <-l.conn.CloseChan():
		case <-time.After(10 * time.Second):
			t.Fatal("the opaque session is still open after its termination")
		}
		select {
		case r := <-l.open.errText:
			if r.text != "" {
				t.Errorf("error stream of the opaque session = %q, want nothing", r.text)
			}
		case <-time.After(10 * time.Second):
			t.Error("the open forward's error stream did not end with the session")
		}
		e.waitSessions(t, "spdy", "terminated", 1)
	})
}

// firstLineWith returns the first line of s containing sub.
func firstLineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
