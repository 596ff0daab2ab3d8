package app

import (
	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/session"
)

// sessionLimits maps the limit flags onto the session registry's limits.
func sessionLimits(o options.LimitsOptions) session.Limits {
	return session.Limits{
		MaxSessions:           o.MaxSessions,
		MaxSessionsPerUser:    o.MaxSessionsPerUser,
		MaxForwardsPerSession: o.MaxForwardsPerSession,
		IdleTimeout:           o.SessionIdleTimeout,
		MaxDuration:           o.MaxSessionDuration,
	}
}
