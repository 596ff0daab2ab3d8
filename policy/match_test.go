package policy

import (
	"testing"
)

const matchPolicy = header + `rules:
- name: web-team
  users: [alice]
  groups: [web-devs]
  clusters: [prod]
  namespaces: [web]
  podSelector: {matchLabels: {app: web}}
  ports: ["8080", "9000-9100"]
- name: web-debug
  users: [alice]
  clusters: [prod]
  namespaces: [web]
  podSelector: {matchExpressions: [{key: debug, operator: Exists}]}
  ports: [22]
- name: ops
  groups: [ops]
- name: anyone-to-sandbox
  users: ["*"]
  namespaces: [sandbox]
  ports: ["3000"]
`

func TestAdmit(t *testing.T) {
	p := mustParse(t, matchPolicy)
	web := map[string]string{"app": "web"}
	tests := []struct {
		name      string
		req       Request
		wantDeny  string // the Denied reason; "" admits
		wantRules string
		allowed   []int32
		forbidden []int32
	}{
		{name: "should admit a user named in a rule, ports from the rule and its ranges",
			req:       Request{User: "alice", Cluster: "prod", Namespace: "web", Pod: "web-1", PodLabels: web},
			wantRules: "web-team", allowed: []int32{8080, 9000, 9050, 9100}, forbidden: []int32{22, 80, 8081, 8999, 9101}},
		{name: "should admit a group member",
			req:       Request{User: "bob", Groups: []string{"x", "web-devs"}, Cluster: "prod", Namespace: "web", PodLabels: web},
			wantRules: "web-team", allowed: []int32{8080}, forbidden: []int32{22}},
		{name: "should add up the ports of every admitting rule",
			req:       Request{User: "alice", Cluster: "prod", Namespace: "web", PodLabels: map[string]string{"app": "web", "debug": "1"}},
			wantRules: "web-team,web-debug", allowed: []int32{22, 8080, 9001}, forbidden: []int32{23}},
		{name: "should allow any port when a rule leaves ports out",
			req:       Request{User: "carol", Groups: []string{"ops"}, Cluster: "staging", Namespace: "kube-system"},
			wantRules: "ops", allowed: []int32{1, 22, 65535}},
		{name: "should let the wildcard match any user",
			req:       Request{User: "mallory", Cluster: "prod", Namespace: "sandbox"},
			wantRules: "anyone-to-sandbox", allowed: []int32{3000}, forbidden: []int32{3001}},
		{name: "should deny another cluster",
			req:      Request{User: "alice", Cluster: "staging", Namespace: "web", PodLabels: web},
			wantDeny: `pfgateway policy: no rule allows cluster "staging", namespace "web", pod labels app=web for this user`},
		{name: "should deny another namespace",
			req:      Request{User: "alice", Cluster: "prod", Namespace: "db", PodLabels: web},
			wantDeny: `pfgateway policy: no rule allows cluster "prod", namespace "db", pod labels app=web for this user`},
		{name: "should deny pods the selector does not select",
			req:      Request{User: "alice", Cluster: "prod", Namespace: "web", PodLabels: map[string]string{"app": "db", "tier": "x"}},
			wantDeny: `pfgateway policy: no rule allows cluster "prod", namespace "web", pod labels app=db,tier=x for this user`},
		{name: "should deny an unlabelled pod to a selector",
			req:      Request{User: "bob", Groups: []string{"web-devs"}, Cluster: "prod", Namespace: "web"},
			wantDeny: `pfgateway policy: no rule allows cluster "prod", namespace "web", pod labels <none> for this user`},
		{name: "should deny by default what only the wildcard rule applies to",
			req:      Request{User: "dave", Groups: []string{"devs"}, Cluster: "prod", Namespace: "web", PodLabels: web},
			wantDeny: `pfgateway policy: no rule allows cluster "prod", namespace "web", pod labels app=web for this user`},
		{name: "should not confuse a group with a user name",
			req:      Request{User: "ops", Cluster: "prod", Namespace: "web"},
			wantDeny: `pfgateway policy: no rule allows cluster "prod", namespace "web", pod labels <none> for this user`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := p.Admit(tt.req)
			if tt.wantDeny != "" {
				if err == nil {
					t.Fatalf("admitted by %q, want denied", a.Rules())
				}
				if err.Error() != tt.wantDeny {
					t.Errorf("denied with\n%q, want\n%q", err, tt.wantDeny)
				}
				return
			}
			if err != nil {
				t.Fatalf("denied: %v", err)
			}
			if a.Rules() != tt.wantRules {
				t.Errorf("rules %q, want %q", a.Rules(), tt.wantRules)
			}
			if a.RestrictsPorts() != (len(tt.forbidden) > 0) {
				t.Errorf("RestrictsPorts = %v", a.RestrictsPorts())
			}
			for _, port := range tt.allowed {
				if !a.AllowsPort(port) {
					t.Errorf("port %d refused", port)
				}
			}
			for _, port := range tt.forbidden {
				if a.AllowsPort(port) {
					t.Errorf("port %d allowed", port)
				}
			}
		})
	}
}

func TestPortDenial(t *testing.T) {
	a, err := mustParse(t, matchPolicy).Admit(Request{User: "alice", Cluster: "prod", Namespace: "web", Pod: "web-1", PodLabels: map[string]string{"app": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "pfgateway policy forbids port 22 on pod web/web-1 for user alice (no rule allows it)"
	if got := a.PortDenial(22); got != want {
		t.Errorf("PortDenial = %q, want %q", got, want)
	}
}

func TestDenyUnknownCaller(t *testing.T) {
	p := mustParse(t, policyA) // alice only
	_, err := p.Admit(Request{User: "dave", Groups: []string{"alice"}, Cluster: "c", Namespace: "n"})
	if want := "pfgateway policy: no rule applies to this user or their groups"; err == nil || err.Error() != want {
		t.Errorf("denial %v, want %q", err, want)
	}
}

func TestEmptyPolicyDeniesEverything(t *testing.T) {
	p := mustParse(t, header+"rules: []\n")
	if _, err := p.Admit(Request{User: "root", Groups: []string{"system:masters"}, Cluster: "c", Namespace: "n"}); err == nil {
		t.Fatal("an empty policy admitted a request")
	}
}
