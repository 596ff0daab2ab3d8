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
}

func (e ErrLimit) Error() string {
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

// admit checks the concurrency limits for s; r.mu must be held, so the check
// and the registration are one step and concurrent Begins cannot overshoot.
func (r *Registry) admit(s *Session) error {
	l := r.limits
	if l.MaxSessions > 0 && len(r.live) >= l.MaxSessions {
		return ErrLimit{Limit: l.MaxSessions}
	}
	if l.MaxSessionsPerUser > 0 && r.perUser[s.User] >= l.MaxSessionsPerUser {
		return ErrLimit{User: s.User, Limit: l.MaxSessionsPerUser}
	}
	return nil
}

// SweepPeriod is how often Sweep looks for idle and over-age sessions: a
// quarter of the shortest time limit, so a session overstays by at most
// about half of it (the idle clock starts at the first sweep that sees the
// session spliced), and never more often than every 50ms.
func (l Limits) SweepPeriod() time.Duration {
	d := l.IdleTimeout
	if d == 0 || (l.MaxDuration > 0 && l.MaxDuration < d) {
		d = l.MaxDuration
	}
	return max(d/4, 50*time.Millisecond)
}

// Sweep closes idle and over-age sessions until ctx ends. It is one ticker
// for the whole registry: the data path only adds to the byte counters it
// already has, and the sweep compares them with what it saw last time.
// Without a time limit it returns at once.
func (r *Registry) Sweep(ctx context.Context) {
	r.mu.Lock()
	l := r.limits
	r.mu.Unlock()
	if l.IdleTimeout <= 0 && l.MaxDuration <= 0 {
		return
	}
	t := time.NewTicker(l.SweepPeriod())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.sweep(now)
		}
	}
}

type victim struct {
	s       *Session
	outcome metrics.Outcome
	reason  string
}

// sweep closes the sessions that are over a time limit at now.
func (r *Registry) sweep(now time.Time) {
	r.mu.Lock()
	l := r.limits
	// The slice is kept between sweeps so a steady state allocates nothing.
	victims := r.victims[:0]
	for _, s := range r.live {
		if o, why := s.expired(l, now); o != "" {
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

// expired says whether s is over a limit at now. Called with the registry's
// lock held, which also protects the session's sweep fields.
func (s *Session) expired(l Limits, now time.Time) (metrics.Outcome, string) {
	s.mu.Lock()
	spliced, closed := s.upgraded && s.closer != nil, s.closedByRegistry
	s.mu.Unlock()
	if !spliced || closed {
		// Before the splice the kubelet upgrade timeout bounds the session,
		// and there is nothing to close yet.
		return "", ""
	}
	if l.MaxDuration > 0 && now.Sub(s.Start) >= l.MaxDuration {
		return metrics.OutcomeMaxDuration, fmt.Sprintf("the session reached --max-session-duration (%v)", l.MaxDuration)
	}
	if l.IdleTimeout <= 0 {
		return "", ""
	}
	if n := s.activity(); s.idleSince.IsZero() || n != s.sweptBytes {
		// Any relayed byte, in either direction, restarts the idle clock.
		s.sweptBytes, s.idleSince = n, now
		return "", ""
	}
	if now.Sub(s.idleSince) >= l.IdleTimeout {
		return metrics.OutcomeIdleTimeout, fmt.Sprintf("no traffic in either direction for --session-idle-timeout (%v)", l.IdleTimeout)
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
