package e2e

import (
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/session"
)

// TestGracefulShutdown cancels the gateway's context with sessions live and
// checks the drain:
//   - /readyz answers 503 at once;
//   - the listener stays open: a new port-forward gets a 503
//     ServiceUnavailable Status naming the shutdown (so clients and load
//     balancers go elsewhere, instead of meeting a refused connection), a
//     read-only call is still served;
//   - live sessions go on: a 4 MiB upload and download begun during the
//     drain, in a session opened before it, finishes SHA-256 exact;
//   - at the end of the grace period the sessions left are closed: each
//     open forwarded connection gets "the gateway is shutting down" on its
//     error stream (SPDY and the WebSocket tunnel), client-go's forwarder
//     ends;
//   - Run returns, the listener then refuses connections, and the metrics
//     and the audit log count the sessions as closed_by_gateway.
func TestGracefulShutdown(t *testing.T) {
	const grace = 8 * time.Second
	const size = 4 << 20
	logPath := filepath.Join(t.TempDir(), "audit.log")
	e := newEnv(t, func(o *options.Options) { o.Serving.ShutdownGracePeriod, o.Audit.LogPath = grace, logPath })

	endless := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
	c, err := endless.dial()
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
	busy := startForward(t, dialer(t, dialTunnel, e.cfg, e.pfURL("", "hash")), hashPort)
	lives := []*liveForward{e.openLive(t, dialSPDY, "hash"), e.openLive(t, dialTunnel, "hash")}

	start := time.Now()
	e.cancel()
	transferred := make(chan error, 1)
	go func() {
		c, err := busy.dial()
		if err != nil {
			transferred <- err
			return
		}
		defer c.Close()
		_, err = transfer(t, c, size, size)
		transferred <- err
	}()
	eventually(t, grace, "/readyz to answer 503 while draining", func() bool {
		code, _ := e.admin("/readyz")
		return code == http.StatusServiceUnavailable
	})
	r := e.raw(t, http.MethodPost, strings.Replace(pfPath, "%s", "hash", 1), spdyUpgrade, true)
	expectStatus(t, r, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "the gateway is shutting down")
	if _, err := tryForward(dialer(t, dialFallback, e.cfg, e.pfURL("", "hash")), hashPort); err == nil || !strings.Contains(err.Error(), "the gateway is shutting down") {
		t.Errorf("client-go's fallback dialer while draining: %v; want the shutdown message", err)
	}
	if r := e.raw(t, http.MethodGet, "/api/v1/namespaces/default/pods/hash", nil, true); r.code != http.StatusOK || !strings.Contains(r.body, `"name":"hash"`) {
		t.Errorf("a read-only call while draining: %d %.200s", r.code, r.body)
	}
	select {
	case err := <-transferred:
		if err != nil {
			t.Fatalf("the transfer during the drain: %v", err)
		}
		t.Logf("a %d MiB upload and download finished %v into the drain, hashes equal", size>>20, time.Since(start).Round(time.Millisecond))
	case <-time.After(time.Until(start.Add(grace))):
		t.Fatalf("the transfer did not finish within the %v grace period", grace)
	}

	for _, l := range lives {
		d := l.expectMessage(t, session.MessageShutdown, grace+10*time.Second)
		if at := time.Since(start) - d; at < 0 {
			t.Errorf("%s: message before the shutdown began", l.kind)
		}
	}
	if d := time.Since(start); d < grace*9/10 {
		t.Errorf("the sessions were closed %v after the shutdown began, before the %v grace period", d, grace)
	}
	select {
	case r := <-ended:
		d := r.at.Sub(start)
		t.Logf("the endless download streamed %d MiB and ended %v after the shutdown began (grace %v)", r.n>>20, d.Round(time.Millisecond), grace)
		if d < grace*9/10 {
			t.Errorf("the endless download ended %v after the shutdown began, before the %v grace period", d, grace)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the endless download was not closed after the grace period")
	}
	for _, f := range []*forward{endless, busy} {
		select {
		case err := <-f.done:
			if err == nil {
				t.Error("ForwardPorts returned nil; want the lost-connection error")
			}
		case <-time.After(10 * time.Second):
			t.Error("client-go's forwarder did not notice the closed session")
		}
	}
	if err := e.shutdown(10 * time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > grace+10*time.Second {
		t.Errorf("Run returned %v after the shutdown began, want about the %v grace period", d, grace)
	}
	if conn, err := net.DialTimeout("tcp", e.gw.Addr(), time.Second); err == nil {
		_ = conn.Close()
		t.Error("the listener still accepts connections after Run returned")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dialing after Run returned: %v, want connection refused", err)
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
	// openLive's first forwarded connection and the transfer ended by
	// themselves; every session was closed by the drain.
	want := map[string]float64{"outcome=closed_by_gateway,protocol=spdy": 2, "outcome=closed_by_gateway,protocol=websocket": 2}
	if got := nonZero(m.series(mSessions)); len(got) != 2 || got["outcome=closed_by_gateway,protocol=spdy"] != 2 || got["outcome=closed_by_gateway,protocol=websocket"] != 2 {
		t.Errorf("%s:%s\nwant:%s", mSessions, formatSeries(got), formatSeries(want))
	}
	// The raw request, and the fallback dialer's two (WebSocket, then SPDY).
	if got := nonZero(m.series(mRejected)); len(got) != 1 || got["code=503"] != 3 {
		t.Errorf("%s:%s\nwant only {code=503} 3", mRejected, formatSeries(got))
	}
	if got := m.value(mActive, nil); got != 0 {
		t.Errorf("%s = %g after the drain, want 0", mActive, got)
	}
	n := 0
	for _, ev := range auditEvents(t, logPath, http.StatusSwitchingProtocols) {
		if ev.Stage == auditv1.StageResponseComplete && ev.Annotations["pfgateway.io/port"] == "" {
			if a := ev.Annotations; a["pfgateway.io/outcome"] != "closed_by_gateway" || a["pfgateway.io/close-reason"] != "the gateway shut down after --shutdown-grace-period" {
				t.Errorf("session-end audit event: %v", a)
			}
			n++
		}
	}
	if n != 4 {
		t.Errorf("%d session-end audit events, want 4", n)
	}
}

// TestGracefulShutdownDelay: with --shutdown-delay-duration and no session
// left, the listener still stays open for the delay (port-forwards get the
// 503 Status, read-only calls are served), then Run returns.
func TestGracefulShutdownDelay(t *testing.T) {
	const delay = 3 * time.Second
	e := newEnv(t, func(o *options.Options) { o.Shutdown.Delay = delay })
	start := time.Now()
	e.cancel()
	eventually(t, delay, "/readyz to answer 503 while draining", func() bool {
		code, _ := e.admin("/readyz")
		return code == http.StatusServiceUnavailable
	})
	r := e.raw(t, http.MethodPost, strings.Replace(pfPath, "%s", "hash", 1), spdyUpgrade, true)
	expectStatus(t, r, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "the gateway is shutting down")
	if r := e.raw(t, http.MethodGet, "/api/v1/namespaces/default/pods/hash", nil, true); r.code != http.StatusOK {
		t.Errorf("a read-only call during the delay: %d %.200s", r.code, r.body)
	}
	if d := time.Since(start); d >= delay {
		t.Fatalf("the checks took %v, longer than the %v delay: nothing was shown", d, delay)
	}
	if err := e.shutdown(delay + 10*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d < delay*9/10 || d > delay+5*time.Second {
		t.Errorf("Run returned %v after the shutdown began, want about the %v delay", d, delay)
	}
}
