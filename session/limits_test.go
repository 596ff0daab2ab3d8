package session

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/metrics"
)

func TestBeginLimits(t *testing.T) {
	tests := []struct {
		name    string
		limits  Limits
		live    []string // users of sessions already open
		user    string
		wantErr string
	}{
		{name: "should admit anything without limits", live: []string{"alice", "alice", "bob"}, user: "alice"},
		{name: "should admit under the global limit", limits: Limits{MaxSessions: 3}, live: []string{"alice", "bob"}, user: "carol"},
		{name: "should refuse at the global limit", limits: Limits{MaxSessions: 2}, live: []string{"alice", "bob"}, user: "carol",
			wantErr: "too many port-forward sessions on this gateway (limit 2)"},
		{name: "should refuse a user at their limit", limits: Limits{MaxSessionsPerUser: 2}, live: []string{"alice", "alice", "bob"}, user: "alice",
			wantErr: `too many port-forward sessions for user "alice" (limit 2)`},
		{name: "should admit another user under theirs", limits: Limits{MaxSessionsPerUser: 2}, live: []string{"alice", "alice"}, user: "bob"},
		{name: "should name the global limit when both are hit", limits: Limits{MaxSessions: 1, MaxSessionsPerUser: 1}, live: []string{"alice"}, user: "alice",
			wantErr: "too many port-forward sessions on this gateway (limit 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRegistry()
			r.SetLimits(tt.limits)
			for _, u := range tt.live {
				if _, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, User: u}); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			_, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, User: tt.user})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var limit ErrLimit
			if !errors.As(err, &limit) || err.Error() != tt.wantErr {
				t.Fatalf("got %v, want ErrLimit %q", err, tt.wantErr)
			}
		})
	}
}

func TestBeginLimitFreedByEnd(t *testing.T) {
	r, _ := newRegistry()
	r.SetLimits(Limits{MaxSessionsPerUser: 1})
	s, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, User: "alice"}); err == nil {
		t.Fatal("second session admitted")
	}
	s.End(metrics.OutcomeCompleted, "")
	if _, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, User: "alice"}); err != nil {
		t.Fatalf("a slot freed by End was not reused: %v", err)
	}
	if len(r.perUser) != 1 {
		t.Fatalf("per-user counts leak: %v", r.perUser)
	}
}

// TestBeginLimitsConcurrent races many Begins against each limit: the check
// and the registration are one step, so exactly the limit gets through.
func TestBeginLimitsConcurrent(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		user   func(i int) string
		want   int
	}{
		{name: "should admit exactly the global limit", limits: Limits{MaxSessions: 7}, user: func(i int) string { return string(rune('a' + i%5)) }, want: 7},
		{name: "should admit exactly the per-user limit", limits: Limits{MaxSessionsPerUser: 3}, user: func(int) string { return "alice" }, want: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRegistry()
			r.SetLimits(tt.limits)
			var admitted atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if _, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, User: tt.user(i)}); err == nil {
						admitted.Add(1)
					}
				}()
			}
			close(start)
			wg.Wait()
			if got := int(admitted.Load()); got != tt.want || r.Len() != tt.want {
				t.Fatalf("admitted %d (live %d), want %d", got, r.Len(), tt.want)
			}
		})
	}
}

// TestSweep drives the sweep with an explicit clock.
func TestSweep(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		at      time.Duration // since the session began
		bytes   int           // relayed just before this sweep
		closed  bool          // the sweep must have closed the session
		outcome metrics.Outcome
	}
	tests := []struct {
		name     string
		limits   Limits
		upgraded bool
		steps    []step
	}{
		{name: "should close an idle session", limits: Limits{IdleTimeout: time.Second}, upgraded: true,
			steps: []step{{at: 0}, {at: 900 * time.Millisecond}, {at: time.Second, closed: true, outcome: metrics.OutcomeIdleTimeout}}},
		{name: "should never close a session that keeps moving bytes", limits: Limits{IdleTimeout: time.Second}, upgraded: true,
			steps: []step{{at: 0}, {at: 800 * time.Millisecond, bytes: 1}, {at: 1600 * time.Millisecond, bytes: 1}, {at: 2400 * time.Millisecond, bytes: 1}, {at: 3200 * time.Millisecond, bytes: 1}}},
		{name: "should restart the idle clock on traffic", limits: Limits{IdleTimeout: time.Second}, upgraded: true,
			steps: []step{{at: 0}, {at: 900 * time.Millisecond, bytes: 1}, {at: 1800 * time.Millisecond}, {at: 1900 * time.Millisecond, closed: true, outcome: metrics.OutcomeIdleTimeout}}},
		{name: "should close a busy session at its maximum duration", limits: Limits{IdleTimeout: time.Second, MaxDuration: 2 * time.Second}, upgraded: true,
			steps: []step{{at: 0}, {at: 900 * time.Millisecond, bytes: 1}, {at: 1800 * time.Millisecond, bytes: 1}, {at: 2 * time.Second, bytes: 1, closed: true, outcome: metrics.OutcomeMaxDuration}}},
		{name: "should leave a session that is not spliced yet", limits: Limits{IdleTimeout: time.Second, MaxDuration: time.Second},
			steps: []step{{at: 0}, {at: 5 * time.Second}}},
		{name: "should do nothing without time limits", limits: Limits{MaxSessions: 1}, upgraded: true,
			steps: []step{{at: 0}, {at: 24 * time.Hour}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, reg := newRegistry()
			r.SetLimits(tt.limits)
			s, err := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, Start: t0})
			if err != nil {
				t.Fatal(err)
			}
			var closes atomic.Int32
			if tt.upgraded {
				// Like the splice: closing the connection ends the session.
				s.Upgraded(closerFunc(func() error { closes.Add(1); s.End(metrics.OutcomeCompleted, "connection closed"); return nil }))
			}
			for _, st := range tt.steps {
				s.AddUp(st.bytes)
				r.sweep(t0.Add(st.at))
				if closed := closes.Load() > 0; closed != st.closed {
					t.Fatalf("at %v: closed %v, want %v", st.at, closed, st.closed)
				}
				if st.closed {
					if got := sumLabel(t, reg, "pfgateway_portforward_sessions_total", "outcome", string(st.outcome)); got != 1 {
						t.Fatalf("outcome %s counted %v times", st.outcome, got)
					}
					r.sweep(t0.Add(st.at + time.Hour))
					if closes.Load() != 1 || r.Len() != 0 {
						t.Fatalf("closed %d times, live %d", closes.Load(), r.Len())
					}
					return
				}
			}
		})
	}
}

func TestSweepPeriod(t *testing.T) {
	tests := []struct {
		limits Limits
		want   time.Duration
	}{
		{Limits{IdleTimeout: 4 * time.Second}, time.Second},
		{Limits{MaxDuration: 8 * time.Second}, 2 * time.Second},
		{Limits{IdleTimeout: time.Minute, MaxDuration: 4 * time.Second}, time.Second},
		{Limits{IdleTimeout: 100 * time.Millisecond}, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := tt.limits.SweepPeriod(); got != tt.want {
			t.Errorf("%+v: %v, want %v", tt.limits, got, tt.want)
		}
	}
}

// TestSweepAllocs pins that a sweep over quiet sessions allocates nothing.
func TestSweepAllocs(t *testing.T) {
	r, _ := newRegistry()
	r.SetLimits(Limits{IdleTimeout: time.Hour})
	for range 100 {
		s, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY})
		s.Upgraded(closerFunc(func() error { return nil }))
	}
	now := time.Now()
	if n := testing.AllocsPerRun(10, func() { r.sweep(now) }); n != 0 {
		t.Fatalf("sweep allocates %v times", n)
	}
}

// TestSweepPayload: with the stream-aware splice, only forwarded payload
// counts; the SPDY pings in the byte counters do not keep a session alive.
func TestSweepPayload(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r, reg := newRegistry()
	r.SetLimits(Limits{IdleTimeout: time.Second})
	s, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, Start: t0})
	payload := s.TrackPayload()
	var closes atomic.Int32
	s.Upgraded(closerFunc(func() error { closes.Add(1); s.End(metrics.OutcomeCompleted, ""); return nil }))
	r.sweep(t0)
	payload.Add(100) // a forwarded connection moves data
	s.AddUp(120)
	r.sweep(t0.Add(900 * time.Millisecond))
	s.AddUp(12) // a ping and its mirror: framing only
	s.AddDown(12)
	r.sweep(t0.Add(1800 * time.Millisecond))
	if closes.Load() != 0 {
		t.Fatal("closed while payload moved less than the idle timeout ago")
	}
	r.sweep(t0.Add(1900 * time.Millisecond))
	if closes.Load() != 1 || sumLabel(t, reg, "pfgateway_portforward_sessions_total", "outcome", "idle_timeout") != 1 {
		t.Fatalf("pings kept the session alive: closes %d", closes.Load())
	}
}
