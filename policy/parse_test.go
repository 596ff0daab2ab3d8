package policy

import (
	"strings"
	"testing"
)

const header = "apiVersion: pfgateway.io/v1alpha1\nkind: Policy\n"

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		wantErr []string // substrings of the error; none means valid
	}{
		{name: "should accept the documented example", file: header + `rules:
- name: web-team
  users: [alice]
  groups: [web-devs]
  clusters: [prod]
  namespaces: [web]
  podSelector: {matchLabels: {app: web}}
  ports: ["8080", 9090, "9000-9100"]
`},
		{name: "should accept an empty rule list (deny everything)", file: header + "rules: []\n"},
		{name: "should accept a wildcard subject and selector expressions", file: header + `rules:
- name: all
  users: ["*"]
  podSelector: {matchExpressions: [{key: tier, operator: In, values: [a, b]}]}
`},
		{name: "should refuse a missing rule list", file: header, wantErr: []string{"rules: Required value"}},
		{name: "should refuse an unknown field", file: header + "rules:\n- name: a\n  users: [x]\n  namespace: [web]\n",
			wantErr: []string{`unknown field "namespace"`}},
		{name: "should refuse a duplicated field", file: header + "rules:\n- name: a\n  users: [x]\n  users: [y]\n",
			wantErr: []string{`key "users" already set`}},
		{name: "should refuse another apiVersion and kind", file: "apiVersion: v1\nkind: ConfigMap\nrules: []\n",
			wantErr: []string{`apiVersion: Unsupported value: "v1"`, `kind: Unsupported value: "ConfigMap"`}},
		{name: "should refuse a rule without subject", file: header + "rules:\n- name: a\n  namespaces: [web]\n",
			wantErr: []string{"rules[0].users: Required value"}},
		{name: "should refuse a rule without name, and duplicate names", file: header + "rules:\n- users: [a]\n- name: b\n  users: [a]\n- name: b\n  groups: [g]\n",
			wantErr: []string{"rules[0].name: Required value", `rules[2].name: Duplicate value: "b"`}},
		{name: "should refuse empty lists, which would read as nothing", file: header + "rules:\n- name: a\n  users: []\n  groups: [g]\n  namespaces: []\n  ports: []\n",
			wantErr: []string{"rules[0].users: Required value", "rules[0].namespaces: Required value", "rules[0].ports: Required value"}},
		{name: "should refuse empty names and invalid namespaces and clusters", file: header + "rules:\n- name: a\n  users: [\"\"]\n  clusters: [Prod_1]\n  namespaces: [web.x]\n",
			wantErr: []string{"rules[0].users[0]: Required value", `rules[0].clusters[0]: Invalid value: "Prod_1"`, `rules[0].namespaces[0]: Invalid value: "web.x"`}},
		{name: "should refuse ports out of range, reversed ranges and junk", file: header + "rules:\n- name: a\n  users: [x]\n  ports: [0, 65536, \"100-90\", \"http\", \"1-\", \"-5\", \"70000\"]\n",
			wantErr: []string{
				"rules[0].ports[0]: Invalid value: \"0\": port 0 must be between 1 and 65535",
				"rules[0].ports[1]: Invalid value: \"65536\": port 65536 must be between 1 and 65535",
				`rules[0].ports[2]: Invalid value: "100-90": range 100-90 is reversed`,
				`rules[0].ports[3]: Invalid value: "http": "http" is not a port number`,
				`rules[0].ports[4]: Invalid value: "1-"`,
				`rules[0].ports[5]: Invalid value: "-5"`,
				`rules[0].ports[6]: Invalid value: "70000": port 70000 must be between 1 and 65535`,
			}},
		{name: "should refuse an invalid selector", file: header + "rules:\n- name: a\n  users: [x]\n  podSelector: {matchExpressions: [{key: app, operator: Near}]}\n",
			wantErr: []string{"rules[0].podSelector: Invalid value", `"Near" is not a valid label selector operator`}},
		{name: "should refuse a bad label key", file: header + "rules:\n- name: a\n  users: [x]\n  podSelector: {matchLabels: {\"a b\": c}}\n",
			wantErr: []string{"rules[0].podSelector: Invalid value"}},
		{name: "should refuse YAML that is not a policy", file: "- just\n- a list\n", wantErr: []string{"decoding the policy file"}},
		{name: "should refuse an alias bomb", file: "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" +
			"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
			wantErr: []string{"excessive aliasing"}},
		{name: "should refuse a file over the size limit", file: header + "rules: []\n#" + strings.Repeat("x", MaxFileSize),
			wantErr: []string{"larger than the 1048576 allowed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.file))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if len(p.Hash) != 64 {
					t.Errorf("hash %q, want 64 hex digits", p.Hash)
				}
				return
			}
			if err == nil {
				t.Fatal("Parse accepted the file")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestPortRules(t *testing.T) {
	p := mustParse(t, header+"rules:\n- name: a\n  users: [x]\n- name: b\n  users: [x]\n  ports: [22]\n")
	if got := strings.Join(p.PortRules(), ","); got != "b" {
		t.Errorf("PortRules = %q, want b", got)
	}
}

func mustParse(t testing.TB, s string) *Policy {
	t.Helper()
	p, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
