// Package session tracks live port-forward sessions: who opened them, where
// they go, how many bytes moved and how they ended. The registry is also how
// shutdown drains, because http.Server.Shutdown neither waits for nor closes
// hijacked connections.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/relay"
)

// Session is one port-forward request, from routing to the end of its splice.
type Session struct {
	ID        string
	User      string
	Groups    []string
	Source    string
	Cluster   string
	Namespace string
	Pod       string
	Protocol  metrics.Protocol
	Ports     []int32 // known before the upgrade only for the legacy WebSocket protocol
	// Policy is the gateway policy's decision that admitted the session
	// (the rule that matched), for the audit record; empty without a policy.
	Policy string
	// Decide, if set, rules on each forwarded connection (stream pair) of
	// the stream-aware splice: the policy's port check for this session.
	Decide relay.Decide
	// UserLimits, if set before Begin, narrow the registry's limits for
	// this session (the gateway policy's limits for its caller).
	UserLimits UserLimits
	Start      time.Time
	// Context is the request's context, for observers: the audit finds its
	// record of the request there. Nil outside a request. It is done once
	// the handler returns, while the session may go on: read values only.
	Context context.Context

	up, down         atomic.Int64
	forwards         atomic.Int64 // forwarded connections (stream-aware splice only)
	last             atomic.Int64 // unix nanos of the last relayed byte; 0: none yet
	payload          atomic.Int64 // forwarded payload bytes, once TrackPayload was called
	payloadTracked   atomic.Bool
	upCtr, downCtr   prometheus.Counter
	mu               sync.Mutex // protects the fields below
	node             string
	upgraded         bool
	closer           io.Closer
	closedByRegistry bool
	terminatedBy     string          // who terminated it through the admin API; "": nobody
	closedOutcome    metrics.Outcome // why the registry closed it (ForceClose)
	closedReason     string
	closeMsg         string    // what the client is told (close.go)
	podUID           types.UID // the pod the session was resolved to (close.go)

	lim limits        // fixed by Begin (userlimits.go)
	fwd *forwardLimit // set by LimitForwards; nil: no limit

	// Sweep state (limits.go), protected by the registry's mu.
	sweptBytes int64
	idleSince  time.Time

	reg  *Registry
	once sync.Once
}

// SetNode records the node the session was resolved to.
func (s *Session) SetNode(node string) {
	s.mu.Lock()
	s.node = node
	s.mu.Unlock()
}

// Upgraded marks the session as spliced and registers the closer the
// registry uses to end it on shutdown. If the registry already started force-
// closing sessions, c is closed at once.
func (s *Session) Upgraded(c io.Closer) {
	s.mu.Lock()
	s.upgraded = true
	s.closer = c
	closeNow := s.closedByRegistry || s.terminatedBy != ""
	s.mu.Unlock()
	if o := s.observer(); o != nil {
		o.SessionStarted(s)
	}
	if closeNow {
		closeWith(c, s.closeMessage())
	}
}

// AddUp counts n bytes relayed from the client to the kubelet.
func (s *Session) AddUp(n int) {
	s.touch()
	s.up.Add(int64(n))
	s.upCtr.Add(float64(n))
}

// AddDown counts n bytes relayed from the kubelet to the client.
func (s *Session) AddDown(n int) {
	s.touch()
	s.down.Add(int64(n))
	s.downCtr.Add(float64(n))
}

// Bytes returns the bytes relayed so far, up and down.
func (s *Session) Bytes() (up, down int64) { return s.up.Load(), s.down.Load() }

// End records the outcome, logs the session's one summary line and removes
// it from the registry. Only the first call counts. reason is free text for
// the log (an error message), never a metric label.
func (s *Session) End(o metrics.Outcome, reason string) {
	s.once.Do(func() {
		s.mu.Lock()
		upgraded, node, forced, by := s.upgraded, s.node, s.closedByRegistry, s.terminatedBy
		limitOutcome, limitReason := s.closedOutcome, s.closedReason
		s.mu.Unlock()
		if forced && upgraded {
			o = metrics.OutcomeClosedByGateway
			if limitOutcome != "" {
				o, reason = limitOutcome, limitReason
			}
		}
		if by != "" && upgraded {
			// The splice's own reason is the closed connection's error.
			o, reason = metrics.OutcomeTerminated, "terminated through the admin API by "+by
		}
		d := time.Since(s.Start)
		up, down := s.Bytes()
		s.reg.metrics.SessionEnded(s.Cluster, s.Protocol, o, upgraded, d)
		klog.InfoS("Port-forward session ended",
			"sessionID", s.ID, "user", s.User, "groups", s.Groups, "source", s.Source,
			"cluster", s.Cluster, "namespace", s.Namespace, "pod", s.Pod, "node", node,
			"protocol", s.Protocol, "ports", s.Ports, "forwards", s.forwards.Load(), "bytesUp", up, "bytesDown", down,
			"duration", d.Round(time.Millisecond), "outcome", o, "reason", reason)
		if obs := s.observer(); obs != nil {
			obs.SessionEnded(s, Ended{Outcome: o, Reason: reason, Upgraded: upgraded, Node: node,
				Up: up, Down: down, Forwards: s.forwards.Load(), Duration: d, TerminatedBy: by})
		}
		s.reg.remove(s)
	})
}

// Registry holds the live sessions of one gateway process.
type Registry struct {
	metrics  *metrics.Metrics
	observer Observer // set before serving; nil: none

	mu       sync.Mutex // protects the fields below
	live     map[string]*Session
	perUser  map[string]int // live sessions by user name, for Limits
	limits   Limits
	victims  []victim      // sweep's scratch space
	wake     chan struct{} // made by Sweep: a session with a shorter time limit began
	period   time.Duration // Sweep's period in use; 0: not ticking
	draining bool
	idle     chan struct{} // closed when live becomes empty while draining
}

// NewRegistry returns an empty registry reporting to m.
func NewRegistry(m *metrics.Metrics) *Registry {
	return &Registry{metrics: m, live: map[string]*Session{}, perUser: map[string]int{}}
}

// ErrDraining is returned by Begin once shutdown has started.
type ErrDraining struct{}

func (ErrDraining) Error() string { return "the gateway is shutting down" }

// Begin registers a new session. The caller must call End exactly once.
func (r *Registry) Begin(s *Session) (*Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return nil, ErrDraining{}
	}
	if err := r.admit(s); err != nil {
		return nil, err
	}
	s.ID = newID()
	if s.Start.IsZero() {
		s.Start = time.Now()
	}
	s.reg = r
	s.upCtr, s.downCtr = r.metrics.ByteCounters(s.Cluster, s.Protocol)
	r.live[s.ID] = s
	r.perUser[s.User]++
	r.metrics.SessionStarted(s.Cluster, s.Protocol)
	return s, nil
}

// Len returns the number of live sessions.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

func (r *Registry) remove(s *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, s.ID)
	if r.perUser[s.User]--; r.perUser[s.User] <= 0 {
		delete(r.perUser, s.User)
	}
	if r.draining && len(r.live) == 0 && r.idle != nil {
		close(r.idle)
		r.idle = nil
	}
}

// drainCloseWait bounds Drain's wait for the sessions it closed: a relay's
// stop (message, a second for the client to hang up, GOAWAY) takes at most
// 3 s, even with a client that does not read.
const drainCloseWait = 5 * time.Second

// Drain refuses new sessions, waits up to grace for live ones to end by
// themselves, then closes the rest with MessageShutdown and waits up to
// drainCloseWait for them to finish their bookkeeping. It returns the
// number of sessions it closed.
func (r *Registry) Drain(grace time.Duration) int {
	r.mu.Lock()
	r.draining = true
	if len(r.live) == 0 {
		r.mu.Unlock()
		return 0
	}
	idle := make(chan struct{})
	r.idle = idle
	r.mu.Unlock()

	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-idle:
		return 0
	case <-t.C:
	}

	r.mu.Lock()
	victims := make([]*Session, 0, len(r.live))
	for _, s := range r.live {
		victims = append(victims, s)
	}
	r.mu.Unlock()
	for _, s := range victims {
		// In parallel: an opaque splice's close may wait on a peer.
		go s.ForceClose(metrics.OutcomeClosedByGateway, "the gateway shut down after --shutdown-grace-period", MessageShutdown)
	}
	select {
	case <-idle:
	case <-time.After(drainCloseWait):
	}
	return len(victims)
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
