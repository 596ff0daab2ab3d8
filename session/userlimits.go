package session

import (
	"fmt"
	"time"

	"github.com/pfgateway/pfgateway/metrics"
)

// UserLimits narrow the registry's Limits for one session: the gateway
// policy's limits for its caller, set before Begin. A zero field leaves
// the registry's limit; a value above it is capped by it, so they can only
// narrow. Begin fixes the session's limits for its whole life.
type UserLimits struct {
	// Policy names the policy's limits entry, for messages; "" when none.
	Policy string
	// MaxSessions bounds the concurrent sessions of the session's user.
	MaxSessions int
	// MaxForwards bounds the session's open forwarded connections.
	MaxForwards int
	IdleTimeout time.Duration
	MaxDuration time.Duration
}

// bound is one limit in force for a session, and whether the policy set it
// (rather than a flag).
type bound[T int | time.Duration] struct {
	v      T
	policy bool
}

// narrow is the tighter of the flag's limit and the policy's; zero is none.
func narrow[T int | time.Duration](flag, policy T) bound[T] {
	if policy > 0 && (flag <= 0 || policy < flag) {
		return bound[T]{policy, true}
	}
	return bound[T]{flag, false}
}

func (b bound[T]) source() metrics.LimitSource {
	if b.policy {
		return metrics.LimitSourcePolicy
	}
	return metrics.LimitSourceFlag
}

// limits are a session's limits, fixed by Begin.
type limits struct {
	policy    string // the policy's limits entry
	perUser   bound[int]
	forwards  bound[int]
	idle, age bound[time.Duration]
}

func (l Limits) forSession(u UserLimits) limits {
	return limits{
		policy:   u.Policy,
		perUser:  narrow(l.MaxSessionsPerUser, u.MaxSessions),
		forwards: narrow(l.MaxForwardsPerSession, u.MaxForwards),
		idle:     narrow(l.IdleTimeout, u.IdleTimeout),
		age:      narrow(l.MaxDuration, u.MaxDuration),
	}
}

// shortest is the session's shortest time limit; 0: none.
func (l *limits) shortest() time.Duration { return shortestOf(l.idle.v, l.age.v) }

// shortestOf is the shorter of two limits, zero being none.
func shortestOf(a, b time.Duration) time.Duration {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// setBy names what set a limit in messages: the flag, or the policy key
// and entry.
func (l *limits) setBy(policy bool, flag, key string) string {
	if policy {
		return fmt.Sprintf("%s in pfgateway policy limits %q", key, l.policy)
	}
	return flag
}
