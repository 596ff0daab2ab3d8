package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

const mLimitHits = "pfgateway_portforward_limit_hits_total"

// allowAll is the rules part of the limits policies: limits only narrow
// what some rule allows.
const allowAll = `apiVersion: pfgateway.io/v1alpha1
kind: Policy
rules:
- name: all
  users: ["*"]
`

// member is cfg for user in groups, with a client certificate from the dev CA.
func (e *env) member(t *testing.T, user string, groups ...string) *rest.Config {
	t.Helper()
	kp, err := e.cluster.CA.Issue(pki.IssueOptions{CommonName: user, Organization: groups, Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(e.cfg)
	cfg.CertData, cfg.KeyData = kp.CertPEM, kp.KeyPEM
	return cfg
}

// policyEnvWith is a gateway with --policy-file=policy, an audit log and
// tweaks; it returns the two paths.
func policyEnvWith(t *testing.T, policy string, tweak func(*options.Options)) (e *env, policyPath, logPath string) {
	dir := t.TempDir()
	policyPath, logPath = filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "audit.log")
	writePolicy(t, policyPath, policy)
	e = newEnv(t, func(o *options.Options) {
		o.Policy.File, o.Audit.LogPath = policyPath, logPath
		if tweak != nil {
			tweak(o)
		}
	})
	return e, policyPath, logPath
}

// TestLimitsPolicySessions: the policy's per-user session limits, under
// --max-sessions-per-user=3 as the ceiling. alice (1) and bob (the
// catch-all's 2) are refused one more session with 429, Retry-After and a
// message naming the policy entry; an SRE (an exception listed first) gets
// the flag's 3; others are unaffected by alice's limit. Raising alice's
// limit in the file applies to her next session. Metrics and audit agree.
func TestLimitsPolicySessions(t *testing.T) {
	const policy = allowAll + `limits:
- name: sre
  groups: [sre]
- name: alice-one
  users: [alice]
  maxSessions: 1
- name: default
  users: ["*"]
  maxSessions: 2
`
	e, path, logPath := policyEnvWith(t, policy, func(o *options.Options) { o.Limits.MaxSessionsPerUser = 3 })
	msg := func(user string, limit int, entry string) string {
		if entry == "" {
			return fmt.Sprintf("too many port-forward sessions for user %q (limit %d)", user, limit)
		}
		return fmt.Sprintf("too many port-forward sessions for user %q (limit %d, maxSessions in pfgateway policy limits %q)", user, limit, entry)
	}
	move := func(f *forward) {
		t.Helper()
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := transfer(t, c, 64<<10, 256<<10); err != nil {
			t.FailNow()
		}
	}
	open := func(cfg *rest.Config) *forward {
		t.Helper()
		f := startForward(t, dialer(t, dialSPDY, cfg, e.pfURL("", "hash")), hashPort)
		move(f)
		return f
	}
	refused := func(cfg *rest.Config, want string) {
		t.Helper()
		if f, err := tryForward(dialer(t, dialSPDY, cfg, e.pfURL("", "hash")), hashPort); err == nil {
			f.stop()
			t.Fatalf("a session over the limit was accepted; want %q", want)
		} else if !strings.Contains(err.Error(), want) {
			t.Errorf("client-go: %v; want the message %q", err, want)
		}
	}

	alice := open(e.cfg)
	r := e.raw(t, http.MethodPost, pf("hash"), spdyUpgrade, true)
	if want := msg("alice", 1, "alice-one"); r.code != http.StatusTooManyRequests || r.status == nil || r.status.Reason != "TooManyRequests" || r.status.Message != want {
		t.Errorf("alice's second session: %d %q; want 429 TooManyRequests %q", r.code, r.body, want)
	}
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want \"1\"", got)
	}
	refused(e.cfg, msg("alice", 1, "alice-one"))

	bob := e.member(t, "bob", "devs")
	open(bob)
	open(bob)
	refused(bob, msg("bob", 2, "default"))

	sam := e.member(t, "sam", "sre", "devs")
	for range 3 {
		open(sam)
	}
	refused(sam, msg("sam", 3, ""))
	move(alice) // the session holding alice's slot is untouched

	// An edit applies to new sessions: alice may now have 2.
	writePolicy(t, path, strings.Replace(policy, "maxSessions: 1", "maxSessions: 2", 1))
	eventually(t, 20*time.Second, "the edited policy to load", func() bool {
		return e.scrape(t).value(mPolicyReloads, labels{"result": "success"}) == 1
	})
	open(e.cfg)
	refused(e.cfg, msg("alice", 2, "alice-one"))

	m := e.scrape(t)
	if got := nonZero(m.series(mLimitHits)); len(got) != 2 || got["limit=max_sessions_per_user,source=policy"] != 4 || got["limit=max_sessions_per_user,source=flag"] != 1 {
		t.Errorf("%s:%s\nwant only {limit=max_sessions_per_user,source=policy} 4 and {…,source=flag} 1", mLimitHits, formatSeries(got))
	}
	if got := nonZero(m.series(mRejected)); len(got) != 1 || got["code=429"] != 5 {
		t.Errorf("%s:%s\nwant only {code=429} 5", mRejected, formatSeries(got))
	}
	if err := e.shutdown(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, ev := range auditEvents(t, logPath, http.StatusTooManyRequests) {
		if ev.Stage != auditv1.StageResponseComplete || ev.ResponseStatus.Reason != "TooManyRequests" {
			t.Errorf("429 event: stage %s, status %+v", ev.Stage, ev.ResponseStatus)
		}
		got[ev.User.Username+": "+ev.ResponseStatus.Message]++
	}
	want := map[string]int{
		"alice: " + msg("alice", 1, "alice-one"): 2, "alice: " + msg("alice", 2, "alice-one"): 1,
		"bob: " + msg("bob", 2, "default"): 1, "sam: " + msg("sam", 3, ""): 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("429 audit events by user and message:\n%v\nwant\n%v", got, want)
	}
}

// TestLimitsForwardsPerSession: the policy gives alice 2 forwarded
// connections per session, under --max-forwards-per-session=3. In one raw
// SPDY or WebSocket-tunnel session (client-go's PortForwarder would end its whole session on
// the error text), a third open pair is refused with the exact message on
// its error stream; the open ones still move bytes SHA-256 exact; once one
// ends, a new one is allowed. Metrics and audit records name the refusals.
func TestLimitsForwardsPerSession(t *testing.T) {
	for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
		t.Run(string(kind), func(t *testing.T) { forwardsLimitInSession(t, kind) })
	}
}

func forwardsLimitInSession(t *testing.T, kind dialerKind) {
	const policy = allowAll + `limits:
- name: two
  users: [alice]
  maxForwardsPerSession: 2
`
	const want = `pfgateway: too many forwarded connections in this session (limit 2, maxForwardsPerSession in pfgateway policy limits "two")`
	e, _, logPath := policyEnvWith(t, policy, func(o *options.Options) { o.Limits.MaxForwardsPerSession = 3 })
	conn, _, err := dialer(t, kind, e.cfg, e.pfURL("", "hash")).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	expectRefused := func(p *pair) {
		t.Helper()
		select {
		case r := <-p.errText:
			if r.text != want {
				t.Errorf("error stream of the pair over the limit: %q (%v), want %q", r.text, r.err, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no message on the error stream of the pair over the limit")
		}
		if n, err := p.data.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("the refused pair's data stream gave %d bytes, %v; want it ended", n, err)
		}
	}
	expectClean := func(p *pair) {
		t.Helper()
		select {
		case r := <-p.errText:
			if r.text != "" || r.err != nil {
				t.Errorf("allowed forward's error stream: %q, %v", r.text, r.err)
			}
		case <-time.After(20 * time.Second):
			t.Error("an allowed forward's error stream did not end")
		}
	}
	forwards := func(outcome string) float64 {
		return e.scrape(t).value(mForwards, labels{"outcome": outcome})
	}

	first := openPair(t, conn, hashPort, 0)
	second := openPair(t, conn, 7002, 1)
	expectRefused(openPair(t, conn, hashPort, 2))
	transfer(t, first.conn(), 2<<20, 1<<20) //nolint:errcheck // reported by transfer
	expectClean(first)
	// The slot is free once the gateway recorded the pair's end.
	eventually(t, 20*time.Second, "the first pair's record", func() bool { return forwards("client_closed")+forwards("pod_closed") == 1 })
	third := openPair(t, conn, hashPort, 3)
	expectRefused(openPair(t, conn, 7002, 4)) // second and third hold the two slots
	transfer(t, second.conn(), 1<<20, 2<<20)  //nolint:errcheck // reported by transfer
	transfer(t, third.conn(), 1<<20, 1<<20)   //nolint:errcheck // reported by transfer
	expectClean(second)
	expectClean(third)
	_ = conn.Close()
	e.waitIdle(t)

	m := e.scrape(t)
	if got := nonZero(m.series(mLimitHits)); len(got) != 1 || got["limit=max_forwards_per_session,source=policy"] != 2 {
		t.Errorf("%s:%s\nwant only {limit=max_forwards_per_session,source=policy} 2", mLimitHits, formatSeries(got))
	}
	if got, ok := m.value(mForwards, labels{"outcome": "refused"}), forwards("client_closed")+forwards("pod_closed"); got != 2 || ok != 3 {
		t.Errorf("%s: refused %v, ended normally %v; want 2 and 3", mForwards, got, ok)
	}
	if err := e.shutdown(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	refusals, normal := 0, 0
	for _, ev := range auditEvents(t, logPath, http.StatusSwitchingProtocols) {
		a := ev.Annotations
		if a["pfgateway.io/request-id"] == "" {
			continue // the session's own events
		}
		switch a["pfgateway.io/outcome"] {
		case "refused":
			refusals++
			if a["pfgateway.io/close-reason"] != want || ev.ResponseStatus.Status != "Failure" || ev.ResponseStatus.Message != want {
				t.Errorf("refused connection's audit event: status %+v, annotations %v; want the message %q", ev.ResponseStatus, a, want)
			}
		case "client_closed", "pod_closed":
			normal++
		default:
			t.Errorf("forwarded connection's audit event with outcome %q", a["pfgateway.io/outcome"])
		}
	}
	if refusals != 2 || normal != 3 {
		t.Errorf("audit: %d refused and %d normal forwarded connections, want 2 and 3", refusals, normal)
	}
}

// TestLimitsPolicyTime: with no time-limit flags, the policy closes
// alice's quiet session at its idleTimeout and bob's busy one at its
// maxSessionDuration (a transfer is never idle), while sam's, which no
// limit applies to, stays open. Metrics and audit name each reason.
func TestLimitsPolicyTime(t *testing.T) {
	const idle, maxAge = time.Second, 4 * time.Second
	const policy = allowAll + `limits:
- name: quiet
  users: [alice]
  idleTimeout: 1s
- name: short
  groups: [streamers]
  maxSessionDuration: 4s
`
	e, _, logPath := policyEnvWith(t, policy, nil)
	untouched := startForward(t, dialer(t, dialSPDY, e.member(t, "sam", "devs"), e.pfURL("", "hash")), hashPort)
	quiet := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")), hashPort)
	quietStart := time.Now()
	busy := startForward(t, dialer(t, dialSPDY, e.member(t, "bob", "streamers"), e.pfURL("", "hash")), hashPort)
	busyStart := time.Now()
	c, err := busy.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, ended := endlessDownload(t, c)

	select {
	case err := <-quiet.done:
		d := time.Since(quietStart)
		t.Logf("alice's idle session ended %v after it began: %v", d.Round(time.Millisecond), err)
		if d < idle || d > idle+3*time.Second {
			t.Errorf("the idle session ended after %v, want about %v", d, idle)
		}
	case <-time.After(idle + 10*time.Second):
		t.Fatal("the policy's idleTimeout did not close alice's session")
	}
	select {
	case r := <-ended:
		d := r.at.Sub(busyStart)
		t.Logf("bob's session streamed %d MiB and ended %v after it began", r.n>>20, d.Round(time.Millisecond))
		if d < maxAge-500*time.Millisecond || d > maxAge+3*time.Second {
			t.Errorf("the busy session ended after %v, want about the policy's maxSessionDuration %v", d, maxAge)
		}
	case <-time.After(maxAge + 10*time.Second):
		t.Fatal("the policy's maxSessionDuration did not close bob's session")
	}
	select {
	case err := <-untouched.done:
		t.Fatalf("sam's session, under no limit, ended: %v", err)
	default:
	}
	cs, err := untouched.dial()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := transfer(t, cs, 64<<10, 64<<10); err != nil {
		t.FailNow()
	}
	_ = cs.Close()
	untouched.stop()
	e.waitIdle(t)

	m := e.scrape(t)
	if got := nonZero(m.series(mLimitHits)); len(got) != 2 || got["limit=idle_timeout,source=policy"] != 1 || got["limit=max_session_duration,source=policy"] != 1 {
		t.Errorf("%s:%s\nwant only {limit=idle_timeout,source=policy} 1 and {limit=max_session_duration,source=policy} 1", mLimitHits, formatSeries(got))
	}
	if got := nonZero(m.series(mSessions)); len(got) != 3 || got["outcome=idle_timeout,protocol=spdy"] != 1 || got["outcome=max_duration,protocol=spdy"] != 1 || got["outcome=completed,protocol=spdy"] != 1 {
		t.Errorf("%s:%s\nwant idle_timeout 1, max_duration 1, completed 1", mSessions, formatSeries(got))
	}
	if err := e.shutdown(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, ev := range auditEvents(t, logPath, http.StatusSwitchingProtocols) {
		if ev.Stage == auditv1.StageResponseComplete && ev.Annotations["pfgateway.io/port"] == "" {
			reasons[ev.User.Username] = ev.Annotations["pfgateway.io/outcome"] + ": " + ev.Annotations["pfgateway.io/close-reason"]
		}
	}
	want := map[string]string{
		"alice": `idle_timeout: no traffic in either direction for idleTimeout in pfgateway policy limits "quiet" (1s)`,
		"bob":   `max_duration: the session reached maxSessionDuration in pfgateway policy limits "short" (4s)`,
	}
	if reasons["alice"] != want["alice"] || reasons["bob"] != want["bob"] || !strings.HasPrefix(reasons["sam"], "completed") {
		t.Errorf("session-end audit outcomes and reasons:\n%q\nwant\n%q and sam completed", reasons, want)
	}
}

// TestLimitsForwardsFlag: --max-forwards-per-session alone, without a
// policy: the flag's message, and its hit counted as a flag's.
func TestLimitsForwardsFlag(t *testing.T) {
	const want = "pfgateway: too many forwarded connections in this session (limit 1)"
	e := newEnv(t, func(o *options.Options) { o.Limits.MaxForwardsPerSession = 1 })
	conn, _, err := dialer(t, dialSPDY, e.cfg, e.pfURL("", "hash")).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	held := openPair(t, conn, hashPort, 0)
	over := openPair(t, conn, hashPort, 1)
	select {
	case r := <-over.errText:
		if r.text != want {
			t.Errorf("error stream: %q (%v), want %q", r.text, r.err, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no message on the error stream of the pair over the limit")
	}
	transfer(t, held.conn(), 1<<20, 1<<20) //nolint:errcheck // reported by transfer
	_ = conn.Close()
	e.waitIdle(t)
	if got := nonZero(e.scrape(t).series(mLimitHits)); len(got) != 1 || got["limit=max_forwards_per_session,source=flag"] != 1 {
		t.Errorf("%s:%s\nwant only {limit=max_forwards_per_session,source=flag} 1", mLimitHits, formatSeries(got))
	}
}
