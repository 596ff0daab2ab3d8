package options

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
)

// LimitsOptions bound sessions gateway-wide. Zero is no limit, so upgrading
// the gateway changes nothing until a limit is set.
type LimitsOptions struct {
	MaxSessions        int
	MaxSessionsPerUser int
	// MaxForwardsPerSession needs --splice-mode=streams (Options.Validate).
	MaxForwardsPerSession int
	SessionIdleTimeout    time.Duration
	MaxSessionDuration    time.Duration
}

// maxForwardsPerSession bounds --max-forwards-per-session: a session has at
// most 65536 streams (--max-streams-per-session), two per forward.
const maxForwardsPerSession = 1 << 15

// NewLimitsOptions returns the defaults: no limits.
func NewLimitsOptions() LimitsOptions { return LimitsOptions{} }

// AddFlags registers the limit flags on fs.
func (o *LimitsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.MaxSessions, "max-sessions", o.MaxSessions, "The most concurrent port-forward sessions on this gateway; more are refused with 429 Too Many Requests (Retry-After: 1). 0 means no limit.")
	fs.IntVar(&o.MaxSessionsPerUser, "max-sessions-per-user", o.MaxSessionsPerUser, "The most concurrent port-forward sessions of one authenticated user name; more are refused with 429 Too Many Requests (Retry-After: 1). 0 means no limit.")
	fs.IntVar(&o.MaxForwardsPerSession, "max-forwards-per-session", o.MaxForwardsPerSession, "With --splice-mode=streams, the most forwarded connections (error + data stream pairs) open at once in one port-forward session; one more is refused with a message on its error stream, the session goes on. 0 means no limit.")
	fs.DurationVar(&o.SessionIdleTimeout, "session-idle-timeout", o.SessionIdleTimeout, "Close a port-forward session that relayed no byte in either direction for this long (a transfer in progress is never idle). 0 means never.")
	fs.DurationVar(&o.MaxSessionDuration, "max-session-duration", o.MaxSessionDuration, "Close a port-forward session this long after it began, even if busy. 0 means never.")
}

// Validate returns every problem, each naming its flag.
func (o *LimitsOptions) Validate() []error {
	var errs []error
	if o.MaxSessions < 0 {
		errs = append(errs, fmt.Errorf("--max-sessions must not be negative, got %d", o.MaxSessions))
	}
	if o.MaxSessionsPerUser < 0 {
		errs = append(errs, fmt.Errorf("--max-sessions-per-user must not be negative, got %d", o.MaxSessionsPerUser))
	}
	if o.MaxForwardsPerSession < 0 || o.MaxForwardsPerSession > maxForwardsPerSession {
		errs = append(errs, fmt.Errorf("--max-forwards-per-session must be between 0 and %d, got %d", maxForwardsPerSession, o.MaxForwardsPerSession))
	}
	if o.SessionIdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("--session-idle-timeout must not be negative, got %v", o.SessionIdleTimeout))
	}
	if o.MaxSessionDuration < 0 {
		errs = append(errs, fmt.Errorf("--max-session-duration must not be negative, got %v", o.MaxSessionDuration))
	}
	return errs
}
