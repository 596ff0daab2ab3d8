package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// limitsPolicy: SREs get the flags' limits back (an exception placed first),
// contractors the tightest, everyone else a default.
const limitsPolicy = header + `rules:
- name: all
  users: ["*"]
limits:
- name: sre
  groups: [sre]
- name: contractors
  users: [carol]
  groups: [contractors]
  maxSessions: 1
  maxForwardsPerSession: 4
  idleTimeout: 90s
  maxSessionDuration: 1h
- name: default
  users: ["*"]
  maxSessions: 3
  idleTimeout: 15m
`

func TestParseLimits(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		wantErr []string // substrings of the error; none means valid
	}{
		{name: "should accept the documented example", file: limitsPolicy},
		{name: "should accept a policy without limits", file: header + "rules: []\n"},
		{name: "should accept an entry that sets nothing (the flags apply)", file: header + "rules: []\nlimits:\n- name: a\n  users: [x]\n"},
		{name: "should refuse an unknown key, such as a misspelt limit", file: header + "rules: []\nlimits:\n- name: a\n  users: [x]\n  maxSession: 2\n",
			wantErr: []string{`unknown field "maxSession"`}},
		{name: "should refuse an entry without name or subject, and duplicate names", file: header + "rules: []\nlimits:\n- maxSessions: 1\n- name: b\n  users: [a]\n- name: b\n  groups: [g]\n",
			wantErr: []string{"limits[0].name: Required value", "limits[0].users: Required value", `limits[2].name: Duplicate value: "b"`}},
		{name: "should refuse an empty subject list", file: header + "rules: []\nlimits:\n- name: a\n  users: []\n  groups: [\"\"]\n",
			wantErr: []string{"limits[0].users: Required value", "limits[0].groups[0]: Required value"}},
		{name: "should refuse zero and negative limits, which would read as none", file: header + "rules: []\nlimits:\n- name: a\n  users: [x]\n  maxSessions: 0\n  maxForwardsPerSession: -1\n  idleTimeout: 0s\n  maxSessionDuration: -1h\n",
			wantErr: []string{
				"limits[0].maxSessions: Invalid value: 0: must be between 1 and 1048576",
				"limits[0].maxForwardsPerSession: Invalid value: -1: must be between 1 and 1048576",
				`limits[0].idleTimeout: Invalid value: "0s": must be a positive duration`,
				`limits[0].maxSessionDuration: Invalid value: "-1h0m0s": must be a positive duration`,
			}},
		{name: "should refuse a count too large and a duration over a year", file: header + "rules: []\nlimits:\n- name: a\n  users: [x]\n  maxSessions: 2000000\n  maxSessionDuration: 9000h\n",
			wantErr: []string{"limits[0].maxSessions: Invalid value: 2000000", `limits[0].maxSessionDuration: Invalid value: "9000h0m0s"`}},
		{name: "should refuse a duration that is not one", file: header + "rules: []\nlimits:\n- name: a\n  users: [x]\n  idleTimeout: 15\n",
			wantErr: []string{"decoding the policy file"}},
		{name: "should refuse a count written as a string", file: header + "rules: []\nlimits:\n- name: a\n  users: [x]\n  maxSessions: \"2\"\n",
			wantErr: []string{"decoding the policy file"}},
		{name: "should refuse limits given as a map", file: header + "rules: []\nlimits: {maxSessions: 2}\n",
			wantErr: []string{"decoding the policy file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.file))
			if len(tt.wantErr) == 0 {
				if err != nil || p == nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestLimitsFor(t *testing.T) {
	p, err := Parse([]byte(limitsPolicy))
	if err != nil {
		t.Fatal(err)
	}
	contractors := UserLimits{Name: "contractors", MaxSessions: 1, MaxForwardsPerSession: 4, IdleTimeout: 90 * time.Second, MaxSessionDuration: time.Hour}
	tests := []struct {
		name   string
		user   string
		groups []string
		want   UserLimits
	}{
		{name: "should give an exception listed first the flags' limits", user: "sam", groups: []string{"sre", "contractors"}, want: UserLimits{Name: "sre"}},
		{name: "should match a user by name", user: "carol", want: contractors},
		{name: "should match a user by group", user: "dan", groups: []string{"system:authenticated", "contractors"}, want: contractors},
		{name: "should fall through to the catch-all", user: "alice", groups: []string{"web"}, want: UserLimits{Name: "default", MaxSessions: 3, IdleTimeout: 15 * time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.LimitsFor(tt.user, tt.groups); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	t.Run("should set nothing when no entry applies", func(t *testing.T) {
		p, err := Parse([]byte(header + "rules: []\nlimits:\n- name: a\n  users: [x]\n  maxSessions: 1\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := p.LimitsFor("y", []string{"g"}); got != (UserLimits{}) {
			t.Fatalf("got %+v", got)
		}
	})
	if got := p.ForwardLimits(); !reflect.DeepEqual(got, []string{"contractors"}) {
		t.Errorf("ForwardLimits: %v, want [contractors]", got)
	}
}
