package e2e

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
)

// TestGracefulShutdown cancels the gateway's context while a session streams
// data and checks the drain: /readyz turns 503, the listener refuses new
// connections, the live session goes on for the grace period and is then
// closed (the client sees its connection end), Run returns, and the session
// is counted as closed_by_gateway.
func TestGracefulShutdown(t *testing.T) {
	const grace = time.Second
	e := newEnv(t, func(o *options.Options) { o.Serving.ShutdownGracePeriod = grace })
	f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
	c, err := f.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	firstByte, ended := endlessDownload(t, c)
	select {
	case <-firstByte:
	case r := <-ended:
		t.Fatalf("the session ended before the shutdown: %v", r.err)
	case <-time.After(30 * time.Second):
		t.Fatal("no data from the pod")
	}

	start := time.Now()
	e.cancel()
	eventually(t, grace, "/readyz to answer 503 while draining", func() bool {
		code, _ := e.admin("/readyz")
		return code == http.StatusServiceUnavailable
	})
	eventually(t, grace, "the listener to refuse connections", func() bool {
		conn, err := net.DialTimeout("tcp", e.gw.Addr(), time.Second)
		if err == nil {
			_ = conn.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	if _, err := tls.Dial("tcp", e.gw.Addr(), e.tlsConfig(true)); err == nil {
		t.Error("a new TLS connection succeeded while draining")
	}

	select {
	case r := <-ended:
		d := r.at.Sub(start)
		t.Logf("the live session streamed %d MiB and ended %v after the shutdown began (grace %v): %v", r.n>>20, d.Round(time.Millisecond), grace, r.err)
		if d < grace*9/10 {
			t.Errorf("the live session ended %v after the shutdown began, before the %v grace period", d, grace)
		}
	case <-time.After(grace + 10*time.Second):
		t.Fatal("the live session was not closed after the grace period")
	}
	select {
	case err := <-f.done:
		if err == nil {
			t.Error("ForwardPorts returned nil; want the lost-connection error")
		}
	case <-time.After(10 * time.Second):
		t.Error("client-go's forwarder did not notice the closed session")
	}
	if err := e.shutdown(10 * time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > grace+5*time.Second {
		t.Errorf("Run returned %v after the shutdown began, want about the %v grace period", d, grace)
	}

	// The admin listener is closed once Run returns: read the registry itself.
	mfs, err := e.gw.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := metrics{}
	for _, mf := range mfs {
		m[mf.GetName()] = mf
	}
	if got := nonZero(m.series(mSessions)); len(got) != 1 || got["outcome=closed_by_gateway,protocol=spdy"] != 1 {
		t.Errorf("%s:%s\nwant only {outcome=closed_by_gateway,protocol=spdy} 1", mSessions, formatSeries(got))
	}
	if got := m.value(mActive, nil); got != 0 {
		t.Errorf("%s = %g after the drain, want 0", mActive, got)
	}
}
