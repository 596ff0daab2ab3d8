package session

import (
	"time"

	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/relay"
)

// Forwarded records one forwarded connection of the session (an error +
// data stream pair seen by the stream-aware splice): its metrics and one
// log line a security team can follow back to the session.
func (s *Session) Forwarded(rec relay.Record) {
	if s.fwd != nil {
		s.fwd.release(rec.RequestID)
	}
	s.forwards.Add(1)
	s.mu.Lock()
	node := s.node
	s.mu.Unlock()
	d := rec.Duration()
	s.reg.metrics.ForwardEnded(s.Cluster, s.Protocol, rec.Port, string(rec.Outcome), rec.Up, rec.Down, d)
	klog.InfoS("Forwarded connection ended",
		"sessionID", s.ID, "user", s.User, "cluster", s.Cluster, "namespace", s.Namespace, "pod", s.Pod, "node", node,
		"port", rec.Port, "requestID", rec.RequestID, "bytesUp", rec.Up, "bytesDown", rec.Down,
		"duration", d.Round(time.Microsecond), "outcome", rec.Outcome, "message", rec.Message)
	if o := s.observer(); o != nil {
		o.Forwarded(s, rec)
	}
}

// Forwards is the number of forwarded connections recorded so far.
func (s *Session) Forwards() int64 { return s.forwards.Load() }
