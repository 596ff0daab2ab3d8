package session

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/relay"
)

// limitHits reads pfgateway_portforward_limit_hits_total as "limit/source" → value.
func limitHits(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "pfgateway_portforward_limit_hits_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var l, s string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "limit":
					l = lp.GetValue()
				case "source":
					s = lp.GetValue()
				}
			}
			out[l+"/"+s] += m.GetCounter().GetValue()
		}
	}
	return out
}

func TestBeginUserLimits(t *testing.T) {
	tests := []struct {
		name     string
		flags    Limits
		policy   UserLimits // alice's
		live     int        // alice's sessions already open
		user     string     // who opens one more
		wantErr  string
		wantHits string // limit/source counted once
	}{
		{name: "should refuse at a policy limit tighter than the flag", flags: Limits{MaxSessionsPerUser: 5}, policy: UserLimits{Policy: "contractors", MaxSessions: 2},
			live: 2, user: "alice", wantErr: `too many port-forward sessions for user "alice" (limit 2, maxSessions in pfgateway policy limits "contractors")`,
			wantHits: "max_sessions_per_user/policy"},
		{name: "should apply a policy limit without a flag", policy: UserLimits{Policy: "contractors", MaxSessions: 1},
			live: 1, user: "alice", wantErr: `too many port-forward sessions for user "alice" (limit 1, maxSessions in pfgateway policy limits "contractors")`,
			wantHits: "max_sessions_per_user/policy"},
		{name: "should keep the flag as the ceiling over a wider policy", flags: Limits{MaxSessionsPerUser: 2}, policy: UserLimits{Policy: "wide", MaxSessions: 10},
			live: 2, user: "alice", wantErr: `too many port-forward sessions for user "alice" (limit 2)`, wantHits: "max_sessions_per_user/flag"},
		{name: "should admit under the policy limit", flags: Limits{MaxSessionsPerUser: 5}, policy: UserLimits{Policy: "contractors", MaxSessions: 3}, live: 2, user: "alice"},
		{name: "should leave other users to their own limits", policy: UserLimits{Policy: "contractors", MaxSessions: 1}, live: 3, user: "bob"},
		{name: "should count the global limit as a flag hit", flags: Limits{MaxSessions: 2}, policy: UserLimits{Policy: "p", MaxSessions: 5}, live: 2, user: "bob",
			wantErr: "too many port-forward sessions on this gateway (limit 2)", wantHits: "max_sessions/flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, reg := newRegistry()
			r.SetLimits(tt.flags)
			begin := func(user string) error {
				s := &Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, User: user}
				if user == "alice" {
					s.UserLimits = tt.policy // as the handler sets them from the policy
				}
				_, err := r.Begin(s)
				return err
			}
			// alice's earlier sessions were admitted under an older, wider
			// policy: they still count against her limit now.
			old := tt.policy
			tt.policy = UserLimits{}
			for range tt.live {
				if err := begin("alice"); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			tt.policy = old
			err := begin(tt.user)
			hits := limitHits(t, reg)
			if tt.wantErr == "" {
				if err != nil || len(hits) != 0 {
					t.Fatalf("refused: %v (hits %v)", err, hits)
				}
				return
			}
			var limit ErrLimit
			if !errors.As(err, &limit) || err.Error() != tt.wantErr {
				t.Fatalf("got %v, want ErrLimit %q", err, tt.wantErr)
			}
			if len(hits) != 1 || hits[tt.wantHits] != 1 {
				t.Fatalf("hits %v, want only %s = 1", hits, tt.wantHits)
			}
		})
	}
}

// TestSweepUserLimits: a session's time limits are the tighter of the
// flags and its policy limits, fixed when it began, and the reason names
// which one closed it.
func TestSweepUserLimits(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		flags      Limits
		policy     UserLimits
		at         time.Duration // the sweep that must close it, after one at at-10ms that must not
		outcome    metrics.Outcome
		reason     string
		wantHits   string
		quietBytes bool // relay a byte at each sweep (a busy session)
	}{
		{name: "should close at the policy's idle timeout", policy: UserLimits{Policy: "short", IdleTimeout: time.Second}, at: time.Second,
			outcome: metrics.OutcomeIdleTimeout, reason: `no traffic in either direction for idleTimeout in pfgateway policy limits "short" (1s)`, wantHits: "idle_timeout/policy"},
		{name: "should close at the flag's idle timeout when it is tighter", flags: Limits{IdleTimeout: time.Second}, policy: UserLimits{Policy: "long", IdleTimeout: time.Hour},
			at: time.Second, outcome: metrics.OutcomeIdleTimeout, reason: "no traffic in either direction for --session-idle-timeout (1s)", wantHits: "idle_timeout/flag"},
		{name: "should close a busy session at the policy's duration", flags: Limits{MaxDuration: time.Hour}, policy: UserLimits{Policy: "short", MaxDuration: 3 * time.Second},
			at: 3 * time.Second, quietBytes: true, outcome: metrics.OutcomeMaxDuration, reason: `the session reached maxSessionDuration in pfgateway policy limits "short" (3s)`,
			wantHits: "max_session_duration/policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, reg := newRegistry()
			r.SetLimits(tt.flags)
			s, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, Start: t0, UserLimits: tt.policy})
			if err != nil {
				t.Fatal(err)
			}
			r.SetLimits(Limits{IdleTimeout: time.Millisecond}) // later changes do not reach a live session
			var closes atomic.Int32
			s.Upgraded(closerFunc(func() error { closes.Add(1); return nil }))
			sweep := func(at time.Duration) {
				if tt.quietBytes {
					s.AddUp(1)
				}
				r.sweep(t0.Add(at))
			}
			sweep(0)
			sweep(tt.at - 10*time.Millisecond)
			if closes.Load() != 0 {
				t.Fatalf("closed %v early", 10*time.Millisecond)
			}
			sweep(tt.at)
			if closes.Load() != 1 {
				t.Fatal("not closed at its limit")
			}
			s.mu.Lock()
			o, why := s.closedOutcome, s.closedReason
			s.mu.Unlock()
			if o != tt.outcome || why != tt.reason {
				t.Errorf("closed as %s %q, want %s %q", o, why, tt.outcome, tt.reason)
			}
			if hits := limitHits(t, reg); len(hits) != 1 || hits[tt.wantHits] != 1 {
				t.Errorf("hits %v, want only %s = 1", hits, tt.wantHits)
			}
		})
	}
}

// TestSweepFollowsPolicyLimits: without time-limit flags the sweep idles,
// and a session whose policy sets a short idle timeout wakes it: the
// session is closed within a few of its timeouts, on the real clock.
func TestSweepFollowsPolicyLimits(t *testing.T) {
	r, _ := newRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Sweep(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	eventually("the sweep did not start", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.wake != nil })

	s, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, UserLimits: UserLimits{Policy: "p", IdleTimeout: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	s.Upgraded(closerFunc(func() error { s.End(metrics.OutcomeCompleted, ""); close(closed); return nil }))
	start := time.Now()
	select {
	case <-closed:
		t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the policy's idle timeout never closed the session")
	}
	eventually("the sweep kept ticking with no session left", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.period == 0 })
}

// TestForwardLimit drives the per-session forwards limit the way the relay
// calls it: Decide per stream, Forwarded per ended pair.
func TestForwardLimit(t *testing.T) {
	type step struct {
		open    string // requestID of a stream opened ("" : none)
		port    uint16
		end     string // requestID of a pair that ended
		deny    bool   // the stream must be refused
		message string // with this message
	}
	const flagMsg = "pfgateway: too many forwarded connections in this session (limit 2)"
	const policyMsg = `pfgateway: too many forwarded connections in this session (limit 1, maxForwardsPerSession in pfgateway policy limits "few")`
	tests := []struct {
		name     string
		flag     int
		policy   UserLimits
		steps    []step
		wantHits map[string]float64
	}{
		{name: "should refuse the third open pair and count both streams of a pair once", flag: 2, steps: []step{
			{open: "0"}, {open: "0"}, {open: "1"}, {open: "2", deny: true, message: flagMsg}, {open: "1"},
		}, wantHits: map[string]float64{"max_forwards_per_session/flag": 1}},
		{name: "should free a slot when a pair ends", flag: 2, steps: []step{
			{open: "0"}, {open: "1"}, {open: "2", deny: true, message: flagMsg}, {end: "2"}, {end: "0"}, {open: "3"}, {open: "4", deny: true, message: flagMsg},
		}, wantHits: map[string]float64{"max_forwards_per_session/flag": 2}},
		{name: "should apply the policy's tighter limit", flag: 2, policy: UserLimits{Policy: "few", MaxForwards: 1}, steps: []step{
			{open: "0"}, {open: "1", deny: true, message: policyMsg}, {end: "0"}, {open: "2"},
		}, wantHits: map[string]float64{"max_forwards_per_session/policy": 1}},
		{name: "should let a port refusal take no slot", flag: 1, steps: []step{
			{open: "0", port: 22, deny: true, message: "port 22 is forbidden"}, {open: "1"}, {open: "2", port: 22, deny: true, message: "port 22 is forbidden"},
		}, wantHits: map[string]float64{}},
		{name: "should not limit without a limit", steps: []step{{open: "0"}, {open: "1"}, {open: "2"}}, wantHits: map[string]float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, reg := newRegistry()
			r.SetLimits(Limits{MaxForwardsPerSession: tt.flag})
			s, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, UserLimits: tt.policy})
			if err != nil {
				t.Fatal(err)
			}
			s.Decide = func(pi relay.PairInfo) relay.Decision { // the policy's port check
				if pi.Port == 22 {
					return relay.Decision{Deny: true, Message: "port 22 is forbidden"}
				}
				return relay.Decision{}
			}
			s.LimitForwards()
			for i, st := range tt.steps {
				if st.end != "" {
					s.Forwarded(relay.Record{RequestID: st.end, Outcome: relay.OutcomeClientClosed})
					continue
				}
				port := st.port
				if port == 0 {
					port = 8080
				}
				d := s.Decide(relay.PairInfo{RequestID: st.open, Port: port, StreamType: "error"})
				if d.Deny != st.deny || d.Message != st.message {
					t.Fatalf("step %d (open %s): %+v, want deny %v %q", i, st.open, d, st.deny, st.message)
				}
			}
			// Every pair ends: no slot may stay taken.
			for _, st := range tt.steps {
				if st.open != "" {
					s.Forwarded(relay.Record{RequestID: st.open, Outcome: relay.OutcomeClientClosed})
				}
			}
			if n := s.OpenForwards(); n != 0 {
				t.Fatalf("%d slots still taken after every pair ended", n)
			}
			if hits := limitHits(t, reg); len(hits) != len(tt.wantHits) || !equalHits(hits, tt.wantHits) {
				t.Fatalf("hits %v, want %v", hits, tt.wantHits)
			}
		})
	}
}

func equalHits(a, b map[string]float64) bool {
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

// TestForwardLimitConcurrent: the relay's read loop decides while timers
// and the other side's loop record ends; exactly the limit gets through.
func TestForwardLimitConcurrent(t *testing.T) {
	r, _ := newRegistry()
	r.SetLimits(Limits{MaxForwardsPerSession: 3})
	s, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY})
	if err != nil {
		t.Fatal(err)
	}
	s.LimitForwards()
	var admitted atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if !s.Decide(relay.PairInfo{RequestID: strconv.Itoa(i), Port: 80, StreamType: "error"}).Deny {
				admitted.Add(1)
			}
			s.Forwarded(relay.Record{RequestID: strconv.Itoa(1000 + i)}) // someone else's end: no effect
		}()
	}
	close(start)
	wg.Wait()
	if got := admitted.Load(); got != 3 || s.OpenForwards() != 3 {
		t.Fatalf("admitted %d, open %d; want 3", got, s.OpenForwards())
	}
}
