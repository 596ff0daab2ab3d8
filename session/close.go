package session

import (
	"io"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/metrics"
)

// What clients are told when the gateway ends their session. They reach
// kubectl as "an error occurred forwarding L -> R: <message>".
const (
	MessageShutdown   = "pfgateway: the gateway is shutting down"
	MessageTerminated = "pfgateway: session terminated by an administrator"
)

// MessageCloser is a closer (Session.Upgraded) that can tell the client why
// before closing: the stream-aware splice writes the message on the error
// stream of every forwarded connection still open (relay.Stopper). The
// opaque splice and the legacy WebSocket protocol have nowhere to write it
// and are only closed.
type MessageCloser interface {
	io.Closer
	CloseWithMessage(msg string) error
}

// ForceClose ends a session from the gateway's side; every close the
// gateway initiates (shutdown, the admin API, the session limits, the pod
// or its node gone) goes through it. End then reports outcome o and reason
// (log line, metrics, audit) instead of the closed connection the splice
// saw, and the client is told msg where its protocol allows. The first
// forced close wins; it reports whether this one was it. A session not
// yet upgraded is closed as soon as it is. The close may wait on the
// client's connection (an opaque splice's TLS close): callers that must
// not block run it in a goroutine.
func (s *Session) ForceClose(o metrics.Outcome, reason, msg string) bool {
	s.mu.Lock()
	if s.closedByRegistry {
		s.mu.Unlock()
		return false
	}
	s.closedByRegistry = true
	s.closedOutcome, s.closedReason, s.closeMsg = o, reason, msg
	c := s.closer
	s.mu.Unlock()
	klog.V(2).InfoS("Closing port-forward session", "sessionID", s.ID, "user", s.User, "namespace", s.Namespace, "pod", s.Pod, "outcome", o, "reason", reason)
	if c != nil {
		closeWith(c, msg)
	}
	return true
}

// closeWith closes c, telling the client msg if c can.
func closeWith(c io.Closer, msg string) {
	if mc, ok := c.(MessageCloser); ok && msg != "" {
		_ = mc.CloseWithMessage(msg)
		return
	}
	_ = c.Close()
}

func (s *Session) closeMessage() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeMsg
}

// SetPodUID records the UID of the pod the session was resolved to: the
// pod watch (package podwatch) ends the session when that pod is
// gone, even if another pod of the same name replaced it.
func (s *Session) SetPodUID(uid types.UID) {
	s.mu.Lock()
	s.podUID = uid
	s.mu.Unlock()
}

// PodUID is the UID SetPodUID recorded, "" if none.
func (s *Session) PodUID() types.UID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.podUID
}
