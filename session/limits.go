package session

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pfgateway/pfgateway/metrics"
)

// Limits bound the sessions of one registry. A zero field is no limit.
type Limits struct {
	// MaxSessions is the most concurrent sessions, all users together.
	MaxSessions int
	// MaxSessionsPerUser is the most concurrent sessions of one
	// authenticated user name.
	MaxSessionsPerUser int
	// MaxForwardsPerSession is the most forwarded connections open at once
	// in one session of the stream-aware splice (LimitForwards).
	MaxForwardsPerSession int
	// IdleTimeout closes a spliced session that relayed no byte in either
	// direction for this long.
	IdleTimeout time.Duration
	// MaxDuration closes a session this long after it began.
	MaxDuration time.Duration
}

// ErrLimit is returned by Begin when a session would exceed a limit.
type ErrLimit struct {
	User  string // set for the per-user limit, empty for the global one
	Limit int
	// Policy names the policy's limits entry that set the per-user limit;
	// empty for --max-sessions-per-user.
	Policy string
}

func (e ErrLimit) Error() string {
	if e.Policy != "" {
		return fmt.Sprintf("too many port-forward sessions for user %q (limit %d, maxSessions in pfgateway policy limits %q)", e.User, e.Limit, e.Policy)
	}
	if e.User != "" {
		return fmt.Sprintf("too many port-forward sessions for user %q (limit %d)", e.User, e.Limit)
	}
	return fmt.Sprintf("too many port-forward sessions on this gateway (limit %d)", e.Limit)
}

// SetLimits sets the limits; call it before serving.
func (r *Registry) SetLimits(l Limits) {
	r.mu.Lock()
	r.limits = l
	r.mu.Unlock()
}

// admit fixes s's limits and checks the concurrency limits for it; r.mu
// must be held, so the check and the registration are one step and
// concurrent Begins cannot overshoot.
func (r *Registry) admit(s *Session) error {
	l := r.limits
	s.lim = l.forSession(s.UserLimits)
	if l.MaxSessions > 0 && len(r.live) >= l.MaxSessions {
		r.metrics.LimitHit(s.Cluster, metrics.LimitSessions, metrics.LimitSourceFlag)
		return ErrLimit{Limit: l.MaxSessions}
	}
	if u := s.lim.perUser; u.v > 0 && r.perUser[s.User] >= u.v {
		r.metrics.LimitHit(s.Cluster, metrics.LimitSessionsPerUser, u.source())
		e := ErrLimit{User: s.User, Limit: u.v}
		if u.policy {
			e.Policy = s.lim.policy
		}
		return e
	}
	if d := s.lim.shortest(); d > 0 && r.wake != nil && (r.period == 0 || sweepPeriod(d) < r.period) {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// SweepPeriod is how often Sweep looks for idle and over-age sessions: a
// quarter of the shortest time limit, so a session overstays by at most
// about half of it (the idle clock starts at the first sweep that sees the
// session spliced), and never more often than every 50ms.
func (l Limits) SweepPeriod() time.Duration {
	return sweepPeriod(shortestOf(l.IdleTimeout, l.MaxDuration))
}

func sweepPeriod(shortest time.Duration) time.Duration {
	return max(shortest/4, 50*time.Millisecond)
}

// Sweep closes idle and over-age sessions until ctx ends. It is one timer
// for the whole registry: the data path only adds to the byte counters it
// already has, and the sweep compares them with what it saw last time. Its
// period follows the shortest time limit in force, the flags' or a live
// session's (from the policy); without any it waits for a session that
// has one.
func (r *Registry) Sweep(ctx context.Context) {
	r.mu.Lock()
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	wake := r.wake
	r.mu.Unlock()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var tick <-chan time.Time
		if p := r.nextPeriod(); p > 0 {
			t.Reset(p)
			tick = t.C
		} else {
			t.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-wake: // a shorter limit: reschedule
		case now := <-tick:
			r.sweep(now)
		}
	}
}

// nextPeriod is the sweep period for the limits in force now; 0: none.
func (r *Registry) nextPeriod() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	shortest := shortestOf(r.limits.IdleTimeout, r.limits.MaxDuration)
	for _, s := range r.live {
		shortest = shortestOf(shortest, s.lim.shortest())
	}
	r.period = 0
	if shortest > 0 {
		r.period = sweepPeriod(shortest)
	}
	return r.period
}

type victim struct {
	s       *Session
	outcome metrics.Outcome
	reason  string
}

// sweep closes the sessions that are over a time limit at now.
func (r *Registry) sweep(now time.Time) {
	r.mu.Lock()
	// The slice is kept between sweeps so a steady state allocates nothing.
	victims := r.victims[:0]
	for _, s := range r.live {
		if o, why := s.expired(now); o != "" {
			victims = append(victims, victim{s, o, why})
		}
	}
	r.victims = victims
	r.mu.Unlock()
	for _, v := range victims {
		v.s.closeBy(v.outcome, v.reason)
	}
	clear(victims) // drop the references until the next sweep
}

// expired says whether s is over a time limit at now, and counts the hit.
// Called with the registry's lock held, which also protects the session's
// sweep fields.
func (s *Session) expired(now time.Time) (metrics.Outcome, string) {
	s.mu.Lock()
	spliced, closed := s.upgraded && s.closer != nil, s.closedByRegistry
	s.mu.Unlock()
	if !spliced || closed {
		// Before the splice the kubelet upgrade timeout bounds the session,
		// and there is nothing to close yet.
		return "", ""
	}
	l := &s.lim
	if age := l.age; age.v > 0 && now.Sub(s.Start) >= age.v {
		s.reg.metrics.LimitHit(s.Cluster, metrics.LimitSessionDuration, age.source())
		return metrics.OutcomeMaxDuration, fmt.Sprintf("the session reached %s (%v)",
			l.setBy(age.policy, "--max-session-duration", "maxSessionDuration"), age.v)
	}
	idle := l.idle
	if idle.v <= 0 {
		return "", ""
	}
	if n := s.activity(); s.idleSince.IsZero() || n != s.sweptBytes {
		// Any relayed byte, in either direction, restarts the idle clock.
		s.sweptBytes, s.idleSince = n, now
		return "", ""
	}
	if now.Sub(s.idleSince) >= idle.v {
		s.reg.metrics.LimitHit(s.Cluster, metrics.LimitIdleTimeout, idle.source())
		return metrics.OutcomeIdleTimeout, fmt.Sprintf("no traffic in either direction for %s (%v)",
			l.setBy(idle.policy, "--session-idle-timeout", "idleTimeout"), idle.v)
	}
	return "", ""
}

// closeBy ends a spliced session from the gateway's side, recording why, so
// End reports outcome instead of what the splice saw (a closed connection).
func (s *Session) closeBy(o metrics.Outcome, reason string) {
	s.ForceClose(o, reason, "pfgateway: "+reason)
}

// TrackPayload returns the counter the stream-aware splice adds forwarded
// payload bytes to (relay.Options.Payload). From then on the idle timeout
// follows that counter instead of the session's byte counters, which also
// count SPDY pings: client-go pings every 5 s, so a session of an idle
// kubectl would otherwise never be idle.
func (s *Session) TrackPayload() *atomic.Int64 {
	s.payloadTracked.Store(true)
	return &s.payload
}

// activity is what the idle timeout watches: a number that grows with every
// relayed byte of real traffic.
func (s *Session) activity() int64 {
	if s.payloadTracked.Load() {
		return s.payload.Load()
	}
	up, down := s.Bytes()
	return up + down
}
