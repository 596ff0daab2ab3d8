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
		a, err := p.Admit(Request{User: "u", Groups: []string{"g", "*"}, Cluster: "c", Namespace: "n", Pod: "p", PodLabels: map[string]string{"k": "v"}})
		if err == nil {
			_ = a.AllowsPort(0)
			_ = a.AllowsPort(65535)
			_ = a.PortDenial(1)
		}
	})
}
