package portforward

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pfgateway/pfgateway/policy"
	"github.com/pfgateway/pfgateway/session"
)

// TestUserLimits checks that the handler gives a session the policy's
// limits for its caller, by user or group, and none without a policy.
func TestUserLimits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	const file = testPolicy + `limits:
- name: ops
  groups: [ops]
  maxSessions: 2
  maxForwardsPerSession: 5
  idleTimeout: 1m
  maxSessionDuration: 2h
`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := policy.NewLoader(path, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		loader *policy.Loader
		user   string
		groups []string
		want   session.UserLimits
	}{
		{name: "should set the matching entry's limits", loader: l, user: "bob", groups: []string{"ops"},
			want: session.UserLimits{Policy: "ops", MaxSessions: 2, MaxForwards: 5, IdleTimeout: time.Minute, MaxDuration: 2 * time.Hour}},
		{name: "should set nothing when no entry applies", loader: l, user: "alice", groups: []string{"web"}},
		{name: "should set nothing without a policy", user: "bob", groups: []string{"ops"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &session.Session{User: tt.user, Groups: tt.groups}
			(&Handler{Policy: tt.loader}).userLimits(s)
			if s.UserLimits != tt.want {
				t.Fatalf("got %+v, want %+v", s.UserLimits, tt.want)
			}
		})
	}
}
