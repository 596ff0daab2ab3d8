package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// as is cfg for another user, with a client certificate from the dev CA.
func (e *env) as(t *testing.T, user string) *rest.Config {
	t.Helper()
	kp, err := e.cluster.CA.Issue(pki.IssueOptions{CommonName: user, Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(e.cfg)
	cfg.CertData, cfg.KeyData = kp.CertPEM, kp.KeyPEM
	return cfg
}

// auditEvents reads the audit log after shutdown and keeps the events with
// a response code of code.
func auditEvents(t *testing.T, path string, code int32) []auditv1.Event {
	var out []auditv1.Event
	for _, ev := range readAuditLog(t, path) {
		if ev.ResponseStatus != nil && ev.ResponseStatus.Code == code {
			out = append(out, ev)
		}
	}
	return out
}

// TestLimitsSessions: with a concurrency limit reached, one more session is
// refused with 429, Retry-After and the limit's message, counted and
// audited, while the session holding the slot keeps moving bytes; once it
// ends, a new session is accepted.
func TestLimitsSessions(t *testing.T) {
	tests := []struct {
		name    string
		limit   func(*options.LimitsOptions)
		second  string // the user of the refused session
		message string
	}{
		{name: "should refuse a user's second session", limit: func(l *options.LimitsOptions) { l.MaxSessionsPerUser = 1 },
			second: "alice", message: `too many port-forward sessions for user "alice" (limit 1)`},
		{name: "should refuse a session over the global limit", limit: func(l *options.LimitsOptions) { l.MaxSessions = 1 },
			second: "bob", message: "too many port-forward sessions on this gateway (limit 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "audit.log")
			e := newEnv(t, func(o *options.Options) { tt.limit(&o.Limits); o.Audit.LogPath = logPath })
			second := e.cfg
			if tt.second != "alice" {
				second = e.as(t, tt.second)
			}
			first := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
			move := func(f *forward) {
				t.Helper()
				c, err := f.dial()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := transfer(t, c, 1<<20, 1<<20); err != nil {
					t.FailNow()
				}
			}
			move(first)

			// The raw request is alice's; for the global limit any user is over it.
			r := e.raw(t, http.MethodPost, pf("hash"), spdyUpgrade, true)
			if r.code != http.StatusTooManyRequests || r.status == nil || r.status.Reason != "TooManyRequests" || r.status.Message != tt.message {
				t.Errorf("got %d %q; want 429 TooManyRequests %q", r.code, r.body, tt.message)
			}
			if got := r.header.Get("Retry-After"); got != "1" {
				t.Errorf("Retry-After %q, want \"1\"", got)
			}
			if f, err := tryForward(dialer(t, dialSPDY, second, e.pfURL("", "hash")), hashPort); err == nil {
				f.stop()
				t.Fatal("a session over the limit was accepted")
			} else if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("client-go: %v; want the message %q", err, tt.message)
			}
			move(first) // the session holding the slot is untouched

			first.stop()
			<-first.done
			e.waitIdle(t)
			again := startForward(t, dialer(t, dialSPDY, second, e.pfURL("", "hash")), hashPort)
			move(again)
			again.stop()
			<-again.done
			e.waitIdle(t)

			m := e.scrape(t)
			if got := nonZero(m.series(mRejected)); len(got) != 1 || got["code=429"] != 2 {
				t.Errorf("%s:%s\nwant only {code=429} 2", mRejected, formatSeries(got))
			}
			if got := nonZero(m.series(mSessions)); len(got) != 1 || got["outcome=completed,protocol=spdy"] != 2 {
				t.Errorf("%s:%s\nwant only {outcome=completed,protocol=spdy} 2", mSessions, formatSeries(got))
			}
			if err := e.shutdown(30 * time.Second); err != nil {
				t.Fatal(err)
			}
			refused := auditEvents(t, logPath, http.StatusTooManyRequests)
			if len(refused) != 2 {
				t.Fatalf("%d audit events with code 429, want 2", len(refused))
			}
			for _, ev := range refused {
				if ev.Stage != auditv1.StageResponseComplete || ev.ResponseStatus.Message != tt.message || ev.ResponseStatus.Reason != "TooManyRequests" {
					t.Errorf("429 event: stage %s, status %+v; want ResponseComplete with %q", ev.Stage, ev.ResponseStatus, tt.message)
				}
			}
		})
	}
}

// TestLimitsTime: with --session-idle-timeout=1s and
// --max-session-duration=5s, a session with no traffic is closed after about
// a second (client-go's forwarder ends) while one streaming data is not
// idle however long it runs, until the maximum duration closes it too. The
// metrics and the audit log name both outcomes.
func TestLimitsTime(t *testing.T) {
	const idle, maxAge = time.Second, 5 * time.Second
	logPath := filepath.Join(t.TempDir(), "audit.log")
	e := newEnv(t, func(o *options.Options) {
		o.Limits.SessionIdleTimeout, o.Limits.MaxSessionDuration, o.Audit.LogPath = idle, maxAge, logPath
	})

	quiet := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
	quietStart := time.Now()
	busy := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
	busyStart := time.Now()
	c, err := busy.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// An endless download, read until the gateway ends the session.
	_, ended := endlessDownload(t, c)

	select {
	case err := <-quiet.done:
		d := time.Since(quietStart)
		t.Logf("the idle session ended %v after it began: %v", d.Round(time.Millisecond), err)
		if err == nil {
			t.Error("ForwardPorts returned nil; want the lost-connection error")
		}
		if d < idle || d > idle+3*time.Second {
			t.Errorf("the idle session ended after %v, want about %v", d, idle)
		}
	case <-time.After(idle + 10*time.Second):
		t.Fatal("the idle session was not closed")
	}
	select {
	case r := <-ended:
		t.Fatalf("the busy session ended after %v (%d bytes): traffic must keep it open", r.at.Sub(busyStart), r.n)
	case <-time.After(time.Until(busyStart.Add(3 * time.Second))):
	}
	select {
	case r := <-ended:
		d := r.at.Sub(busyStart)
		t.Logf("the busy session streamed %d MiB and ended %v after it began", r.n>>20, d.Round(time.Millisecond))
		if d < maxAge-500*time.Millisecond || d > maxAge+3*time.Second {
			t.Errorf("the busy session ended after %v, want about --max-session-duration %v", d, maxAge)
		}
	case <-time.After(maxAge + 10*time.Second):
		t.Fatal("the busy session was not closed at its maximum duration")
	}
	select {
	case err := <-busy.done:
		if err == nil {
			t.Error("ForwardPorts returned nil; want the lost-connection error")
		}
	case <-time.After(10 * time.Second):
		t.Error("client-go's forwarder did not notice the closed session")
	}
	e.waitIdle(t)

	if got := nonZero(e.scrape(t).series(mSessions)); len(got) != 2 || got["outcome=idle_timeout,protocol=spdy"] != 1 || got["outcome=max_duration,protocol=spdy"] != 1 {
		t.Errorf("%s:%s\nwant only {outcome=idle_timeout,protocol=spdy} 1 and {outcome=max_duration,protocol=spdy} 1", mSessions, formatSeries(got))
	}
	if err := e.shutdown(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]string{}
	for _, ev := range auditEvents(t, logPath, http.StatusSwitchingProtocols) {
		if ev.Stage == auditv1.StageResponseComplete && ev.Annotations["pfgateway.io/port"] == "" {
			outcomes[ev.Annotations["pfgateway.io/outcome"]] = ev.Annotations["pfgateway.io/close-reason"]
		}
	}
	want := map[string]string{
		"idle_timeout": "no traffic in either direction for --session-idle-timeout (1s)",
		"max_duration": "the session reached --max-session-duration (5s)",
	}
	if len(outcomes) != len(want) || outcomes["idle_timeout"] != want["idle_timeout"] || outcomes["max_duration"] != want["max_duration"] {
		t.Errorf("session-end audit outcomes and reasons %q, want %q", outcomes, want)
	}
}

// TestLimitsIdlePings: client-go pings its SPDY connection every 5 s; those
// pings are not traffic, so a quiet session still reaches an idle timeout
// longer than the ping period.
func TestLimitsIdlePings(t *testing.T) {
	const idle = 6 * time.Second // > client-go's 5 s SPDY ping period
	e := newEnv(t, func(o *options.Options) { o.Limits.SessionIdleTimeout = idle })
	quiet := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
	start := time.Now()
	select {
	case err := <-quiet.done:
		d := time.Since(start)
		t.Logf("the pinging idle session ended %v after it began: %v", d.Round(time.Millisecond), err)
		if d < idle-500*time.Millisecond {
			t.Errorf("the idle session ended after %v, before --session-idle-timeout %v", d, idle)
		}
	case <-time.After(idle + 10*time.Second):
		t.Fatal("client-go's pings kept an idle session open")
	}
	e.waitSessions(t, "spdy", "idle_timeout", 1)
}
