package audit

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	apiaudit "k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/relay"
	"github.com/pfgateway/pfgateway/router"
	"github.com/pfgateway/pfgateway/session"
)

var (
	t0    = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	alice = &user.DefaultInfo{Name: "alice", UID: "u-1", Groups: []string{"devs", "system:authenticated"}, Extra: map[string][]string{"scopes": {"a", "b"}}}
)

// pfRequest is a port-forward request as the audit filter sees it: after
// request info, the cluster prefix and authentication.
func pfRequest(t *testing.T, u user.Info) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/clusters/prod/api/v1/namespaces/ns1/pods/web-0/portforward", nil)
	req.RemoteAddr = "192.0.2.7:51234"
	req.Header.Set("User-Agent", "kubectl/v1.33.0")
	req.URL.Path = "/api/v1/namespaces/ns1/pods/web-0/portforward" // as withClusterPrefix leaves it
	resolver := &request.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")}
	ri, err := resolver.NewRequestInfo(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx := request.WithRequestInfo(router.WithCluster(req.Context(), "prod"), ri)
	if u != nil {
		ctx = request.WithUser(ctx, u)
	}
	return req.WithContext(ctx)
}

func TestNewRecord(t *testing.T) {
	r := newRecord(pfRequest(t, alice), t0)
	ev := r.event()
	if ev.AuditID == "" {
		t.Fatal("no auditID")
	}
	ev.AuditID = ""
	want := auditinternal.Event{
		Level: auditinternal.LevelMetadata, Verb: "create",
		RequestURI: "/clusters/prod/api/v1/namespaces/ns1/pods/web-0/portforward",
		UserAgent:  "kubectl/v1.33.0", SourceIPs: []string{"192.0.2.7"},
		User: authnv1.UserInfo{Username: "alice", UID: "u-1", Groups: []string{"devs", "system:authenticated"},
			Extra: map[string]authnv1.ExtraValue{"scopes": {"a", "b"}}},
		ObjectRef:                &auditinternal.ObjectReference{Resource: "pods", Subresource: "portforward", Namespace: "ns1", Name: "web-0", APIVersion: "v1"},
		RequestReceivedTimestamp: metav1.NewMicroTime(t0),
		Annotations:              map[string]string{AnnotCluster: "prod"},
	}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("record\n got %+v\nwant %+v", ev, want)
	}

	// X-Forwarded-For comes first, as in the apiserver's sourceIPs; a long
	// user agent is truncated.
	req := pfRequest(t, nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.1")
	req.Header.Set("User-Agent", strings.Repeat("x", 2000))
	ev = newRecord(req, t0).event()
	if !reflect.DeepEqual(ev.SourceIPs, []string{"198.51.100.1", "192.0.2.7"}) || ev.User.Username != "" ||
		len(ev.UserAgent) != maxUserAgent+len(truncatedSuffix) {
		t.Errorf("sourceIPs %v user %+v userAgent length %d", ev.SourceIPs, ev.User, len(ev.UserAgent))
	}
}

// TestAuthorizationAnnotations: what the apiserver's authorization filter
// leaves in the audit context reaches the events; the gateway's own
// annotations win over a clash.
func TestAuthorizationAnnotations(t *testing.T) {
	r := newRecord(pfRequest(t, alice), t0)
	ctx := apiaudit.WithAuditContext(pfRequest(t, alice).Context())
	r.ac = apiaudit.AuditContextFrom(ctx)
	apiaudit.AddAuditAnnotations(ctx, "authorization.k8s.io/decision", "allow", "authorization.k8s.io/reason", `RBAC: allowed by RoleBinding "pf"`, AnnotCluster, "forged")
	a := r.event().Annotations
	if a["authorization.k8s.io/decision"] != "allow" || a["authorization.k8s.io/reason"] != `RBAC: allowed by RoleBinding "pf"` || a[AnnotCluster] != "prod" {
		t.Fatalf("annotations %v", a)
	}
}

func TestEvents(t *testing.T) {
	spdy := &session.Session{ID: "s1", Cluster: "prod", Namespace: "ns1", Pod: "web-0", Protocol: metrics.ProtocolSPDY, Policy: "rule-a", Start: t0}
	legacy := &session.Session{ID: "s2", Cluster: "prod", Protocol: metrics.ProtocolWebSocketLegacy, Ports: []int32{80, 443}, Start: t0}
	spdy.SetNode("node-1")
	now := t0.Add(2 * time.Second)
	ok101 := &metav1.Status{Status: metav1.StatusSuccess, Code: 101}
	base := func() auditinternal.Event { return newRecord(pfRequest(t, alice), t0).event() }
	tests := []struct {
		name      string
		ev        *auditinternal.Event
		stage     auditinternal.Stage
		status    *metav1.Status
		annots    map[string]string
		ownID     bool
		received  time.Time
		userGroup string
	}{{
		name: "session start", ev: sessionStarted(base(), spdy, now), stage: auditinternal.StageResponseStarted, status: ok101,
		annots: map[string]string{AnnotCluster: "prod", AnnotSessionID: "s1", AnnotProtocol: "spdy", AnnotNode: "node-1", AnnotPolicy: "rule-a"},
	}, {
		name: "legacy session start lists its ports", ev: sessionStarted(base(), legacy, now), stage: auditinternal.StageResponseStarted, status: ok101,
		annots: map[string]string{AnnotCluster: "prod", AnnotSessionID: "s2", AnnotProtocol: "websocket_legacy", AnnotPorts: "80,443"},
	}, {
		name: "session end",
		ev: sessionEnded(base(), spdy, session.Ended{Outcome: metrics.OutcomeClosedByGateway, Reason: "client connection: EOF", Upgraded: true,
			Node: "node-1", Up: 100, Down: 2000, Forwards: 2, Duration: 1500 * time.Millisecond}, now),
		stage: auditinternal.StageResponseComplete, status: ok101,
		annots: map[string]string{AnnotCluster: "prod", AnnotSessionID: "s1", AnnotProtocol: "spdy", AnnotNode: "node-1", AnnotPolicy: "rule-a",
			AnnotBytesUp: "100", AnnotBytesDown: "2000", AnnotDuration: "1.5s", AnnotOutcome: "closed_by_gateway", AnnotCloseReason: "client connection: EOF"},
	}, {
		name: "session terminated through the admin API names who terminated it",
		ev: sessionEnded(base(), spdy, session.Ended{Outcome: metrics.OutcomeTerminated, Reason: "terminated through the admin API by admin API client 127.0.0.1:5",
			Upgraded: true, Node: "node-1", Duration: time.Second, TerminatedBy: "admin API client 127.0.0.1:5"}, now),
		stage: auditinternal.StageResponseComplete, status: ok101,
		annots: map[string]string{AnnotCluster: "prod", AnnotSessionID: "s1", AnnotProtocol: "spdy", AnnotNode: "node-1", AnnotPolicy: "rule-a",
			AnnotBytesUp: "0", AnnotBytesDown: "0", AnnotDuration: "1s", AnnotOutcome: "terminated",
			AnnotCloseReason: "terminated through the admin API by admin API client 127.0.0.1:5", AnnotTerminatedBy: "admin API client 127.0.0.1:5"},
	}, {
		name: "forwarded connection",
		ev: forwarded(base(), spdy, relay.Record{RequestID: "3", Port: 8080, Up: 24, Down: 32, Start: t0.Add(time.Second),
			End: t0.Add(time.Second + 1234567*time.Nanosecond), Outcome: relay.OutcomeClientClosed}, now),
		stage: auditinternal.StageResponseComplete, status: ok101, ownID: true, received: t0.Add(time.Second),
		annots: map[string]string{AnnotCluster: "prod", AnnotSessionID: "s1", AnnotProtocol: "spdy", AnnotNode: "node-1", AnnotPolicy: "rule-a",
			AnnotPort: "8080", AnnotRequestID: "3", AnnotBytesUp: "24", AnnotBytesDown: "32", AnnotDuration: "1.235ms", AnnotOutcome: "client_closed"},
	}, {
		name: "forwarded connection the kubelet failed",
		ev: forwarded(base(), legacy, relay.Record{RequestID: "0", Port: 7001, Start: t0, End: t0,
			Outcome: relay.OutcomeKubeletError, Message: "error forwarding port 7001"}, now),
		stage: auditinternal.StageResponseComplete, status: &metav1.Status{Status: metav1.StatusFailure, Code: 101, Message: "error forwarding port 7001"},
		ownID: true, received: t0,
		annots: map[string]string{AnnotCluster: "prod", AnnotSessionID: "s2", AnnotProtocol: "websocket_legacy",
			AnnotPort: "7001", AnnotRequestID: "0", AnnotBytesUp: "0", AnnotBytesDown: "0", AnnotDuration: "0s", AnnotOutcome: "kubelet_error", AnnotCloseReason: "error forwarding port 7001"},
	}, {
		name: "refused before any session",
		ev: refused(base(), 403, &metav1.Status{Status: metav1.StatusFailure, Code: 403, Reason: metav1.StatusReasonForbidden,
			Message: "forbidden"}, nil, now),
		stage: auditinternal.StageResponseComplete, status: &metav1.Status{Status: metav1.StatusFailure, Code: 403, Reason: metav1.StatusReasonForbidden, Message: "forbidden"},
		annots: map[string]string{AnnotCluster: "prod"},
	}, {
		name: "refused after the session began",
		ev: refused(base(), 404, &metav1.Status{Status: metav1.StatusFailure, Code: 404, Reason: metav1.StatusReasonNotFound, Message: `pods "web-0" not found`},
			&sessionEnd{s: spdy, e: session.Ended{Outcome: metrics.OutcomeRejected, Reason: `pods "web-0" not found`, Duration: 3 * time.Millisecond}}, now),
		stage:  auditinternal.StageResponseComplete,
		status: &metav1.Status{Status: metav1.StatusFailure, Code: 404, Reason: metav1.StatusReasonNotFound, Message: `pods "web-0" not found`},
		annots: map[string]string{AnnotCluster: "prod", AnnotSessionID: "s1", AnnotProtocol: "spdy", AnnotPolicy: "rule-a",
			AnnotDuration: "3ms", AnnotOutcome: "rejected", AnnotCloseReason: `pods "web-0" not found`},
	}, {
		name: "refused with a body that is not a Status", ev: refused(base(), 502, nil, nil, now),
		stage: auditinternal.StageResponseComplete, status: &metav1.Status{Status: metav1.StatusFailure, Code: 502},
		annots: map[string]string{AnnotCluster: "prod"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := tt.ev
			if ev.Stage != tt.stage || !ev.StageTimestamp.Time.Equal(now) {
				t.Errorf("stage %s at %v, want %s at %v", ev.Stage, ev.StageTimestamp, tt.stage, now)
			}
			if !reflect.DeepEqual(ev.ResponseStatus, tt.status) {
				t.Errorf("responseStatus %+v, want %+v", ev.ResponseStatus, tt.status)
			}
			if !reflect.DeepEqual(ev.Annotations, tt.annots) {
				t.Errorf("annotations\n got %v\nwant %v", ev.Annotations, tt.annots)
			}
			received := t0
			if !tt.received.IsZero() {
				received = tt.received
			}
			if !ev.RequestReceivedTimestamp.Time.Equal(received) {
				t.Errorf("requestReceivedTimestamp %v, want %v", ev.RequestReceivedTimestamp, received)
			}
			if ev.Verb != "create" || ev.User.Username != "alice" || ev.ObjectRef.Name != "web-0" || ev.SourceIPs[0] != "192.0.2.7" {
				t.Errorf("shared fields lost: %+v", ev)
			}
		})
	}
	// A forwarded connection's auditID is its own.
	b := base()
	if ev := forwarded(b, spdy, relay.Record{}, now); ev.AuditID == b.AuditID || ev.AuditID == "" {
		t.Errorf("forwarded auditID %q, the session's %q", ev.AuditID, b.AuditID)
	}
	if ev := sessionEnded(b, spdy, session.Ended{}, now); ev.AuditID != b.AuditID {
		t.Errorf("session end auditID %q, want the request's %q", ev.AuditID, b.AuditID)
	}
}

// TestSessionWithoutRecord: a session created without the audit filter in
// front still gets complete events from what it knows.
func TestSessionWithoutRecord(t *testing.T) {
	s := &session.Session{ID: "s9", User: "bob", Groups: []string{"ops"}, Source: "[2001:db8::1]:4000", Cluster: "c",
		Namespace: "ns", Pod: "p", Protocol: metrics.ProtocolWebSocketTunnel, Start: t0}
	base, r := sessionBase(s)
	if r != nil || base.AuditID == "" {
		t.Fatalf("record %v auditID %q", r, base.AuditID)
	}
	ev := sessionStarted(base, s, t0)
	if ev.User.Username != "bob" || !reflect.DeepEqual(ev.User.Groups, []string{"ops"}) || !reflect.DeepEqual(ev.SourceIPs, []string{"2001:db8::1"}) ||
		ev.ObjectRef.Namespace != "ns" || ev.ObjectRef.Name != "p" || ev.ObjectRef.Subresource != "portforward" || ev.Annotations[AnnotProtocol] != "websocket" {
		t.Errorf("event %+v", ev)
	}
}
