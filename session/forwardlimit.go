package session

import (
	"fmt"
	"sync"

	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/relay"
)

// forwardLimit bounds the forwarded connections (error + data stream
// pairs, by requestID) open at once in one session of the stream-aware
// splice. A pair holds its slot from its first stream that Decide allowed
// until its Record; the opaque splice sees no pairs and is not limited.
type forwardLimit struct {
	s     *Session
	limit bound[int]
	msg   string

	mu   sync.Mutex // protects open
	open map[string]struct{}
}

// LimitForwards puts the session's limit on open forwarded connections
// (--max-forwards-per-session, or the policy's tighter one) after
// s.Decide; call it once Decide is final and before the splice starts. A
// pair over the limit is refused with a message on its error stream, as a
// kubelet reports a failed forward; the session and its other forwards go
// on. (client-go's PortForwarder, and so kubectl, ends its whole session on
// any error-stream text; a raw httpstream client does not.)
func (s *Session) LimitForwards() {
	b := s.lim.forwards
	if b.v <= 0 {
		return
	}
	msg := fmt.Sprintf("pfgateway: too many forwarded connections in this session (limit %d)", b.v)
	if b.policy {
		msg = fmt.Sprintf("pfgateway: too many forwarded connections in this session (limit %d, %s)", b.v,
			s.lim.setBy(true, "", "maxForwardsPerSession"))
	}
	fl := &forwardLimit{s: s, limit: b, msg: msg, open: map[string]struct{}{}}
	s.fwd = fl
	next := s.Decide
	s.Decide = func(pi relay.PairInfo) relay.Decision {
		// A pair another check refuses takes no slot.
		if next != nil {
			if d := next(pi); d.Deny {
				return d
			}
		}
		return fl.decide(pi)
	}
}

// decide admits the first stream of a pair if a slot is free; the pair's
// second stream (same requestID) is already counted. It runs on the
// relay's read loop: a map look-up under a mutex, never blocking.
func (fl *forwardLimit) decide(pi relay.PairInfo) relay.Decision {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if _, ok := fl.open[pi.RequestID]; ok {
		return relay.Decision{}
	}
	if len(fl.open) >= fl.limit.v {
		s := fl.s
		s.reg.metrics.LimitHit(s.Cluster, metrics.LimitForwardsPerSession, fl.limit.source())
		klog.V(2).InfoS("Refused a forwarded connection over the session's limit", "sessionID", s.ID, "user", s.User,
			"namespace", s.Namespace, "pod", s.Pod, "port", pi.Port, "requestID", pi.RequestID, "limit", fl.limit.v)
		return relay.Decision{Deny: true, Message: fl.msg}
	}
	fl.open[pi.RequestID] = struct{}{}
	return relay.Decision{}
}

// release frees the slot of an ended pair. A client reusing a requestID
// between a pair's end and its Record (both on the relay) may get one pair
// past the limit uncounted; client-go's ids only grow.
func (fl *forwardLimit) release(requestID string) {
	fl.mu.Lock()
	delete(fl.open, requestID)
	fl.mu.Unlock()
}

// OpenForwards is the number of forwarded connections holding a slot of
// the session's limit; 0 without a limit.
func (s *Session) OpenForwards() int {
	if s.fwd == nil {
		return 0
	}
	s.fwd.mu.Lock()
	defer s.fwd.mu.Unlock()
	return len(s.fwd.open)
}
