package portforward

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/policy"
	"github.com/pfgateway/pfgateway/relay"
	"github.com/pfgateway/pfgateway/resolve"
	"github.com/pfgateway/pfgateway/session"
	"github.com/pfgateway/pfgateway/upgrade"
)

const testPolicy = `apiVersion: pfgateway.io/v1alpha1
kind: Policy
rules:
- name: web-team
  users: [alice]
  namespaces: [web]
  ports: ["8080-8081"]
- name: ops
  groups: [ops]
`

// TestAdmit checks what admit leaves on a session: the admitting rules and
// a per-stream port check (only when ports are restricted), or a 403
// counted as a rejected request.
func TestAdmit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	l, err := policy.NewLoader(path, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(reg)
	h := &Handler{Policy: l, Metrics: m, Sessions: session.NewRegistry(m),
		Proxy: &upgrade.Proxy{Streams: &upgrade.StreamOptions{}}}
	tests := []struct {
		name       string
		s          *session.Session
		wantCode   int
		wantPolicy string
		allowed    []uint16
		forbidden  []uint16
	}{
		{name: "should restrict the ports of a session admitted by a port rule",
			s:        &session.Session{User: "alice", Cluster: "c", Namespace: "web", Pod: "web-1", Protocol: metrics.ProtocolSPDY},
			wantCode: 0, wantPolicy: "web-team", allowed: []uint16{8080, 8081}, forbidden: []uint16{22, 8082}},
		{name: "should leave streams unchecked when every port is allowed",
			s:          &session.Session{User: "carol", Groups: []string{"ops"}, Cluster: "c", Namespace: "db", Pod: "db-1", Protocol: metrics.ProtocolWebSocketTunnel},
			wantPolicy: "ops"},
		{name: "should refuse a legacy WebSocket port before the upgrade",
			s:        &session.Session{User: "alice", Cluster: "c", Namespace: "web", Pod: "web-1", Protocol: metrics.ProtocolWebSocketLegacy, Ports: []int32{8080, 22}},
			wantCode: http.StatusForbidden},
		{name: "should refuse a namespace no rule allows",
			s:        &session.Session{User: "alice", Cluster: "c", Namespace: "db", Pod: "db-1", Protocol: metrics.ProtocolSPDY},
			wantCode: http.StatusForbidden},
	}
	rejected := 0.0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.s
			if _, err := h.Sessions.Begin(s); err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			ok := h.admit(w, httptest.NewRequest("POST", "/", nil), s, &resolve.Target{Node: "n"})
			if tt.wantCode != 0 {
				rejected++
				if ok || w.Code != tt.wantCode {
					t.Fatalf("admitted %v, code %d; want refused with %d", ok, w.Code, tt.wantCode)
				}
				if got := counter(t, reg, "pfgateway_portforward_rejected_requests_total"); got != rejected {
					t.Errorf("rejected requests = %v, want %v", got, rejected)
				}
				return
			}
			defer s.End(metrics.OutcomeCompleted, "")
			if !ok {
				t.Fatalf("refused: %d %s", w.Code, w.Body)
			}
			if s.Policy != tt.wantPolicy {
				t.Errorf("Session.Policy %q, want %q", s.Policy, tt.wantPolicy)
			}
			if (s.Decide != nil) != (len(tt.forbidden) > 0) {
				t.Fatalf("Session.Decide set: %v", s.Decide != nil)
			}
			for _, p := range tt.allowed {
				if d := s.Decide(relay.PairInfo{Port: p, StreamType: "error"}); d.Deny {
					t.Errorf("port %d refused: %q", p, d.Message)
				}
			}
			for _, p := range tt.forbidden {
				d := s.Decide(relay.PairInfo{Port: p, StreamType: "data"})
				if !d.Deny || d.Message == "" {
					t.Errorf("port %d: %+v, want refused with a message", p, d)
				}
			}
		})
	}
}

// counter sums the series of a counter family gathered from reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
