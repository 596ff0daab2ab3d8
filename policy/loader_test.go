package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	policyA = header + "rules:\n- name: a\n  users: [alice]\n"
	policyB = header + "rules:\n- name: b\n  users: [bob]\n"
)

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	// Write then rename, as a ConfigMap update or a careful editor does.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func ruleNames(p *Policy) string {
	var n []string
	for _, r := range p.rules {
		n = append(n, r.name)
	}
	return strings.Join(n, ",")
}

func TestLoaderStart(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, header+"rules:\n- name: a\n")
	if _, err := NewLoader(bad, nil, prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), "rules[0].users: Required value") {
		t.Errorf("bad file at start: %v", err)
	}
	if _, err := NewLoader(filepath.Join(dir, "missing.yaml"), nil, prometheus.NewRegistry()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file at start: %v", err)
	}
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, policyA)
	refuse := func(*Policy) error { return errors.New("not enforceable here") }
	if _, err := NewLoader(good, refuse, prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), "not enforceable here") {
		t.Errorf("check at start: %v", err)
	}
	var nilLoader *Loader
	if nilLoader.Current() != nil {
		t.Error("a nil loader has a policy")
	}
}

// TestReload drives Reload directly: each step's policy in force and the
// counters read back.
func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyA)
	reg := prometheus.NewRegistry()
	restrictive := false
	l, err := NewLoader(path, func(p *Policy) error {
		if restrictive && len(p.PortRules()) > 0 {
			return errors.New("port rules need --splice-mode=streams")
		}
		return nil
	}, reg)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name      string
		write     string // "" leaves the file; "-" deletes it
		wantRules string
		ok, fail  float64
	}{
		{name: "should not count an unchanged file", wantRules: "a"},
		{name: "should install a valid edit", write: policyB, wantRules: "b", ok: 1},
		{name: "should keep the policy on a bad edit", write: header + "rules:\n- name: c\n  users: [x]\n  ports: [0]\n", wantRules: "b", ok: 1, fail: 1},
		{name: "should count the same bad content once", wantRules: "b", ok: 1, fail: 1},
		{name: "should keep the policy when the file is deleted", write: "-", wantRules: "b", ok: 1, fail: 2},
		{name: "should keep the policy on a strict-decoding error", write: policyA + "  extra: 1\n", wantRules: "b", ok: 1, fail: 3},
		{name: "should recover with the next good file", write: policyA, wantRules: "a", ok: 2, fail: 3},
		{name: "should refuse what the check refuses", write: "check:" + policyB + "  ports: [22]\n", wantRules: "a", ok: 2, fail: 4},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			switch {
			case s.write == "-":
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			case strings.HasPrefix(s.write, "check:"):
				restrictive = true
				writeFile(t, path, strings.TrimPrefix(s.write, "check:"))
			case s.write != "":
				writeFile(t, path, s.write)
			}
			l.Reload()
			if got := ruleNames(l.Current()); got != s.wantRules {
				t.Errorf("rules in force %q, want %q", got, s.wantRules)
			}
			if got := testutil.ToFloat64(l.file.Reloads(ResultSuccess)); got != s.ok {
				t.Errorf("reloads{success} = %v, want %v", got, s.ok)
			}
			if got := testutil.ToFloat64(l.file.Reloads(ResultFailure)); got != s.fail {
				t.Errorf("reloads{failure} = %v, want %v", got, s.fail)
			}
			if got := testutil.ToFloat64(l.info.WithLabelValues(l.Current().Hash)); got != 1 {
				t.Errorf("info{hash=current} = %v, want 1", got)
			}
			if n := testutil.CollectAndCount(l.info); n != 1 {
				t.Errorf("info has %d series, want 1", n)
			}
		})
	}
}

// TestRunPicksUpEdits checks the watch (and the periodic check) apply an
// edit and stop with the context.
func TestRunPicksUpEdits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyA)
	l, err := NewLoader(path, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, period := range []time.Duration{time.Hour, 20 * time.Millisecond} { // watch only, then polling too
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { l.Run(ctx, period); close(done) }()
		time.Sleep(50 * time.Millisecond) // let the watch start
		want, next := "b", policyB
		if ruleNames(l.Current()) == "b" {
			want, next = "a", policyA
		}
		writeFile(t, path, next)
		deadline := time.Now().Add(5 * time.Second)
		for ruleNames(l.Current()) != want {
			if time.Now().After(deadline) {
				t.Fatalf("period %v: still %q after 5s, want %q", period, ruleNames(l.Current()), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
}
