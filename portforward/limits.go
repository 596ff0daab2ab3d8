package portforward

import (
	"github.com/pfgateway/pfgateway/session"
)

// userLimits gives s the gateway policy's limits for its caller, before
// Begin checks them. They depend on the caller alone (not the pod), so
// they are known before the pod is read, and a per-user session limit is
// answered without a look-up in the cluster.
func (h *Handler) userLimits(s *session.Session) {
	pol := h.Policy.Current()
	if pol == nil {
		return
	}
	l := pol.LimitsFor(s.User, s.Groups)
	s.UserLimits = session.UserLimits{
		Policy:      l.Name,
		MaxSessions: l.MaxSessions, MaxForwards: l.MaxForwardsPerSession,
		IdleTimeout: l.IdleTimeout, MaxDuration: l.MaxSessionDuration,
	}
}
