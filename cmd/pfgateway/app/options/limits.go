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
	SessionIdleTimeout time.Duration
	MaxSessionDuration time.Duration
}

// NewLimitsOptions returns the defaults: no limits.
func NewLimitsOptions() LimitsOptions { return LimitsOptions{} }

// AddFlags registers the limit flags on fs.
func (o *LimitsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.MaxSessions, "max-sessions", o.MaxSessions, "The most concurrent port-forward sessions on this gateway; more are refused with 429 Too Many Requests (Retry-After: 1). 0 means no limit.")
	fs.IntVar(&o.MaxSessionsPerUser, "max-sessions-per-user", o.MaxSessionsPerUser, "The most concurrent port-forward sessions of one authenticated user name; more are refused with 429 Too Many Requests (Retry-After: 1). 0 means no limit.")
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
	if o.SessionIdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("--session-idle-timeout must not be negative, got %v", o.SessionIdleTimeout))
	}
	if o.MaxSessionDuration < 0 {
		errs = append(errs, fmt.Errorf("--max-session-duration must not be negative, got %v", o.MaxSessionDuration))
	}
	return errs
}
