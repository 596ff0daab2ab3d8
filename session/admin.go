package session

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/pfgateway/pfgateway/metrics"
)

// touch records that a byte moved now. One clock read and one atomic
// store per call, no allocation: it runs for every relayed write.
func (s *Session) touch() { s.last.Store(time.Now().UnixNano()) }

// LastActivity is when the last byte moved in either direction, or the
// session's start if none has yet.
func (s *Session) LastActivity() time.Time {
	if n := s.last.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return s.Start
}

// Snapshot is what the admin API shows of one live session.
type Snapshot struct {
	ID        string           `json:"id"`
	User      string           `json:"user"`
	Groups    []string         `json:"groups"`
	Source    string           `json:"source"`
	Cluster   string           `json:"cluster"`
	Namespace string           `json:"namespace"`
	Pod       string           `json:"pod"`
	Node      string           `json:"node,omitempty"`
	Protocol  metrics.Protocol `json:"protocol"`
	Ports     []int32          `json:"ports,omitempty"` // legacy WebSocket only
	// Upgraded is false while the session is still being resolved,
	// admitted or upgraded.
	Upgraded     bool      `json:"upgraded"`
	BytesUp      int64     `json:"bytesUp"`
	BytesDown    int64     `json:"bytesDown"`
	Forwards     int64     `json:"forwards"`
	StartTime    time.Time `json:"startTime"`
	LastActivity time.Time `json:"lastActivityTime"`
	AgeSeconds   float64   `json:"ageSeconds"`
	IdleSeconds  float64   `json:"idleSeconds"`
}

// Snapshot is s as of now.
func (s *Session) Snapshot(now time.Time) Snapshot {
	s.mu.Lock()
	node, upgraded := s.node, s.upgraded
	s.mu.Unlock()
	up, down := s.Bytes()
	last := s.LastActivity()
	return Snapshot{
		ID: s.ID, User: s.User, Groups: s.Groups, Source: s.Source, Cluster: s.Cluster,
		Namespace: s.Namespace, Pod: s.Pod, Node: node, Protocol: s.Protocol, Ports: s.Ports,
		Upgraded: upgraded, BytesUp: up, BytesDown: down, Forwards: s.forwards.Load(),
		StartTime: s.Start, LastActivity: last,
		AgeSeconds: now.Sub(s.Start).Seconds(), IdleSeconds: max(now.Sub(last), 0).Seconds(),
	}
}

// List is a snapshot of the live sessions, oldest first.
func (r *Registry) List(now time.Time) []Snapshot {
	r.mu.Lock()
	live := make([]*Session, 0, len(r.live))
	for _, s := range r.live {
		live = append(live, s)
	}
	r.mu.Unlock()
	out := make([]Snapshot, 0, len(live))
	for _, s := range live {
		out = append(out, s.Snapshot(now))
	}
	slices.SortFunc(out, func(a, b Snapshot) int {
		if c := a.StartTime.Compare(b.StartTime); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// ErrNotFound: no live session has the id.
var ErrNotFound = errors.New("no live session has this id")

// Terminate ends the live session id on behalf of by (who asked: shown in
// its log line and audit record). It closes the client's and the kubelet's
// connections; the session then ends with outcome terminated as its splice
// returns. A session not yet upgraded is closed as soon as it is.
func (r *Registry) Terminate(id, by string) error {
	r.mu.Lock()
	s := r.live[id]
	r.mu.Unlock()
	if s == nil {
		return ErrNotFound
	}
	s.mu.Lock()
	if s.terminatedBy == "" {
		s.terminatedBy = by
	}
	s.mu.Unlock()
	s.ForceClose(metrics.OutcomeTerminated, "terminated through the admin API by "+by, MessageTerminated)
	return nil
}
