package policy

import (
	"testing"
)

// FuzzParse feeds arbitrary bytes to the parser: it must never panic, and
// whatever it accepts must be usable: every rule matched without panic,
// every allowed port in 1–65535.
func FuzzParse(f *testing.F) {
	f.Add([]byte(matchPolicy))
	f.Add([]byte(policyA))
	f.Add([]byte(header + "rules: []\n"))
	f.Add([]byte(header + "rules:\n- name: a\n  users: [x]\n  ports: [\"1-65535\", 0, \"9-8\"]\n"))
	f.Add([]byte(header + "rules:\n- name: a\n  groups: [\"*\"]\n  podSelector: {matchExpressions: [{key: k, operator: NotIn, values: [v]}]}\n"))
	f.Add([]byte("{\"apiVersion\":\"pfgateway.io/v1alpha1\",\"kind\":\"Policy\",\"rules\":[{\"name\":\"j\",\"users\":[\"u\"]}]}"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte(limitsPolicy))
	f.Add([]byte(header + "rules: []\nlimits:\n- name: a\n  groups: [\"*\"]\n  maxSessions: 0\n  maxForwardsPerSession: 2147483648\n  idleTimeout: -1s\n  maxSessionDuration: 1e3h\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy with an error")
			}
			return
		}
		for _, r := range p.rules {
			if r.name == "" {
				t.Fatal("accepted a rule without a name")
			}
			if !r.anyUser && !r.anyGroup && len(r.users) == 0 && len(r.groups) == 0 {
				t.Fatalf("rule %q has no subject", r.name)
			}
			for _, pr := range r.ports {
				if pr.lo < 1 || pr.hi > 65535 || pr.lo > pr.hi {
					t.Fatalf("rule %q allows the port range %d-%d", r.name, pr.lo, pr.hi)
				}
			}
		}
		for _, l := range p.limits {
			if l.Name == "" || l.MaxSessions < 0 || l.MaxForwardsPerSession < 0 || l.IdleTimeout < 0 || l.MaxSessionDuration < 0 {
				t.Fatalf("accepted the limits entry %+v", l.UserLimits)
			}
		}
		_ = p.LimitsFor("u", []string{"g", "*"})
		a, err := p.Admit(Request{User: "u", Groups: []string{"g", "*"}, Cluster: "c", Namespace: "n", Pod: "p", PodLabels: map[string]string{"k": "v"}})
		if err == nil {
			_ = a.AllowsPort(0)
			_ = a.AllowsPort(65535)
			_ = a.PortDenial(1)
		}
	})
}
