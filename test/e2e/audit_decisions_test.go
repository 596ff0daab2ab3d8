package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
)

// TestAuditDecisions: the audit records carry both decisions behind a
// session, as a security team reads them: the cluster's (the
// SubjectAccessReview, in the API server's authorization.k8s.io
// annotations) and the gateway policy's (the admitting rule, or the 403's
// message).
func TestAuditDecisions(t *testing.T) {
	dir := t.TempDir()
	logPath, policyPath := filepath.Join(dir, "audit.log"), filepath.Join(dir, "policy.yaml")
	writePolicy(t, policyPath, webPolicy)
	e := newEnv(t, func(o *options.Options) { o.Audit.LogPath, o.Policy.File = logPath, policyPath })
	e.cluster.APIServer.SetSubjectAccessReviewer(denyPods)
	ports := map[int32]string{hashPort: e.hash.Addr()}
	e.addPod(devcluster.Pod{Name: "web", Labels: map[string]string{"app": "web"}, Ports: ports})
	e.addPod(devcluster.Pod{Name: "db", Labels: map[string]string{"app": "db"}, Ports: ports})

	f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "web")), hashPort)
	c, err := f.dial()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := transfer(t, c, 1000, 2000); err != nil {
		t.FailNow()
	}
	_ = c.Close()
	f.stop()
	<-f.done
	for _, pod := range []string{"deny-web", "db"} {
		if fw, err := tryForward(dialer(t, dialSPDY, e.cfg, e.pfURL("", pod)), hashPort); err == nil {
			fw.stop()
			t.Fatalf("forward to %s: no error, want 403", pod)
		}
	}
	e.waitIdle(t)
	if err := e.shutdown(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	byPod := map[string][]auditv1.Event{}
	for _, ev := range readAuditLog(t, logPath) {
		if ev.ObjectRef != nil {
			byPod[ev.ObjectRef.Name] = append(byPod[ev.ObjectRef.Name], ev)
		}
	}
	const decision, reason, policy = "authorization.k8s.io/decision", "authorization.k8s.io/reason", "pfgateway.io/policy"
	// web: session start, session end, one forwarded connection; each says
	// the cluster allowed it and which policy rule admitted it.
	if n := len(byPod["web"]); n != 3 {
		t.Errorf("pod web: %d events, want 3 (start, end, one connection)", n)
	}
	for _, ev := range byPod["web"] {
		if a := ev.Annotations; a[decision] != "allow" || a[policy] != "web-team" || ev.ResponseStatus.Code != 101 {
			t.Errorf("pod web %s event: code %d, annotations %v; want 101, %s=allow, %s=web-team", ev.Stage, ev.ResponseStatus.Code, a, decision, policy)
		}
	}
	check := func(pod, wantDecision, wantReason, wantMessage string) {
		t.Helper()
		evs := byPod[pod]
		if len(evs) != 1 {
			t.Fatalf("pod %s: %d events, want 1", pod, len(evs))
		}
		ev := evs[0]
		if ev.Stage != auditv1.StageResponseComplete || ev.ResponseStatus.Code != 403 || ev.User.Username != "alice" ||
			ev.Annotations[decision] != wantDecision || ev.Annotations[reason] != wantReason ||
			!strings.Contains(ev.ResponseStatus.Message, wantMessage) {
			t.Errorf("pod %s: stage %s, code %d, user %q, message %q, annotations %v;\nwant ResponseComplete, 403, alice, %s=%q, %s=%q, message with %q",
				pod, ev.Stage, ev.ResponseStatus.Code, ev.User.Username, ev.ResponseStatus.Message, ev.Annotations,
				decision, wantDecision, reason, wantReason, wantMessage)
		}
	}
	check("deny-web", "forbid", rbacReason, forbiddenMessage("deny-web"))
	check("db", "allow", "", `pfgateway policy: no rule allows cluster "default", namespace "default", pod labels app=db for this user`)
}
