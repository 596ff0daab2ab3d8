package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
)

// TestAuditWebhookHangs: an audit webhook that does not answer never stalls
// the data path. With --audit-overflow=drop sessions keep working and the
// dropped events are counted; with refuse, new sessions get a 503 Status
// while the buffer is full and live ones keep flowing.
func TestAuditWebhookHangs(t *testing.T) {
	newHungEnv := func(t *testing.T, overflow string) (*env, *auditWebhook) {
		wh := startAuditWebhook(t, true)
		e := newEnv(t, func(o *options.Options) {
			o.Audit.WebhookConfigFile, o.Audit.WebhookInitialBackoff = wh.kubeconfig, 50*time.Millisecond
			o.Audit.BufferSize, o.Audit.Overflow = 1, overflow
		})
		t.Cleanup(wh.unblock) // before the gateway stops: its flush then completes
		return e, wh
	}
	count := func(t *testing.T, e *env, result string) float64 {
		return e.gatewayMetrics(t).value(mAuditEvents, labels{"sink": "webhook", "result": result})
	}

	t.Run("drop", func(t *testing.T) {
		e, wh := newHungEnv(t, "drop")
		f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
		for range 3 {
			c, err := f.dial()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := transfer(t, c, 64<<10, 64<<10); err != nil {
				t.FailNow()
			}
			_ = c.Close()
		}
		f.stop()
		<-f.done
		e.waitIdle(t)
		// Start (held by the webhook), three connections, end: five events,
		// one in flight and one buffered.
		eventually(t, 10*time.Second, "dropped audit events", func() bool { return count(t, e, "dropped") == 3 })
		if w := count(t, e, "written"); w != 0 {
			t.Errorf("written %v while the webhook hangs", w)
		}
		wh.unblock()
		eventually(t, 10*time.Second, "the held events to be written", func() bool { return count(t, e, "written") == 2 })
		if n := len(wh.received()); n != 2 {
			t.Errorf("webhook received %d events, want 2", n)
		}
	})

	t.Run("refuse", func(t *testing.T) {
		e, wh := newHungEnv(t, "refuse")
		live := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
		// The session's start event is held by the webhook; the first
		// connection's event fills the buffer of one.
		move := func(what string) {
			t.Helper()
			c, err := live.dial()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := transfer(t, c, 32<<10, 32<<10); err != nil {
				t.Fatalf("%s: the live session stopped flowing", what)
			}
			_ = c.Close()
		}
		move("first connection")
		eventually(t, 10*time.Second, "the audit buffer to fill", func() bool {
			return e.gatewayMetrics(t).value("pfgateway_audit_buffered_events", labels{"sink": "webhook"}) == 1
		})

		expectStatus(t, e.raw(t, http.MethodPost, pf("hash"), spdyUpgrade, true), 503, "ServiceUnavailable", "audit backend unavailable")
		refused, err := tryForward(dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
		if err == nil {
			refused.stop()
			t.Fatal("a new session was admitted while the audit buffer is full")
		}
		if !strings.Contains(err.Error(), "audit backend unavailable") {
			t.Errorf("client-go error %q does not carry the Status message", err)
		}
		move("second connection, while new sessions are refused")
		if got := e.gatewayMetrics(t).value("pfgateway_audit_refused_requests_total", nil); got != 2 {
			t.Errorf("refused requests %v, want 2", got)
		}

		wh.unblock()
		eventually(t, 10*time.Second, "the sink to drain", func() bool { return count(t, e, "written") >= 2 })
		again := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
		c, err := again.dial()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := transfer(t, c, 1024, 1024); err != nil {
			t.FailNow()
		}
		_ = c.Close()
	})
}
