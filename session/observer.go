package session

import (
	"time"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/relay"
)

// Observer is told of each session's life; the audit is one. Its methods
// run on the data path and must not block. The session package does not
// know what an observer does with them.
type Observer interface {
	// SessionStarted is called once the client's connection is upgraded.
	SessionStarted(s *Session)
	// SessionEnded is called once, from End, for every session that began,
	// upgraded or not.
	SessionEnded(s *Session, e Ended)
	// Forwarded is called once per forwarded connection that ended.
	Forwarded(s *Session, rec relay.Record)
}

// Ended is what End knows about a session.
type Ended struct {
	Outcome  metrics.Outcome
	Reason   string // free text (an error message)
	Upgraded bool
	Node     string
	Up, Down int64
	Forwards int64
	Duration time.Duration
	// TerminatedBy names who ended the session through the admin API.
	TerminatedBy string
}

// SetObserver installs o; call it before the registry's first Begin.
func (r *Registry) SetObserver(o Observer) { r.observer = o }

// observer is the registry's observer, nil if none or if s never began.
func (s *Session) observer() Observer {
	if s.reg == nil {
		return nil
	}
	return s.reg.observer
}

// Node is the node the session was resolved to, "" before that.
func (s *Session) Node() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node
}
