// Package audit records port-forward sessions as audit.k8s.io/v1 Events, so
// existing Kubernetes audit pipelines parse them: one when a session
// starts (ResponseStarted, after the upgrade), one when it ends
// (ResponseComplete), one per forwarded connection, and one per
// port-forward request refused before a session began. Events go to the
// apiserver's own log and webhook backends, each behind a bounded buffer:
// the data path never waits for audit.
package audit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	apiaudit "k8s.io/apiserver/pkg/audit"

	"github.com/pfgateway/pfgateway/relay"
	"github.com/pfgateway/pfgateway/session"
)

// Overflow modes.
const (
	// OverflowDrop drops (and counts) events a sink cannot take.
	OverflowDrop = "drop"
	// OverflowRefuse also refuses new sessions with 503 while a sink's buffer
	// is full or its last write failed; live sessions continue.
	OverflowRefuse = "refuse"
)

// Backend is a named audit backend for New.
type Backend struct {
	Name    string // the sink label: "log" or "webhook"
	Backend apiaudit.Backend
}

// Config configures an Auditor.
type Config struct {
	Backends   []Backend
	BufferSize int
	Overflow   string
	Registry   prometheus.Registerer
}

// Auditor turns sessions into events and hands them to its sinks. It is a
// session.Observer and provides the router's audit filters.
type Auditor struct {
	sinks   []*sink
	refuse  bool
	metrics *sinkMetrics
	now     func() time.Time

	closeOnce sync.Once
}

var _ session.Observer = (*Auditor)(nil)

// New makes one buffered sink per backend; Start starts writing.
func New(c Config) (*Auditor, error) {
	if c.BufferSize < 1 {
		return nil, fmt.Errorf("audit buffer size %d must be positive", c.BufferSize)
	}
	if c.Overflow != OverflowDrop && c.Overflow != OverflowRefuse {
		return nil, fmt.Errorf("audit overflow %q must be %q or %q", c.Overflow, OverflowDrop, OverflowRefuse)
	}
	a := &Auditor{refuse: c.Overflow == OverflowRefuse, metrics: newSinkMetrics(c.Registry), now: time.Now}
	for _, b := range c.Backends {
		a.sinks = append(a.sinks, newSink(b.Name, b.Backend, c.BufferSize, a.metrics))
	}
	return a, nil
}

// Start starts the sinks' writers. A nil Auditor does nothing.
func (a *Auditor) Start() {
	if a == nil {
		return
	}
	for _, s := range a.sinks {
		s.start()
	}
}

// Unavailable: some sink's buffer is full or its last write failed.
func (a *Auditor) Unavailable() bool {
	for _, s := range a.sinks {
		if s.Unavailable() {
			return true
		}
	}
	return false
}

func (a *Auditor) emit(ev *auditinternal.Event) {
	for _, s := range a.sinks {
		// Each sink gets its own copy: backends may hold events while
		// another one writes.
		s.Add(ev.DeepCopy())
	}
}

// SessionStarted emits the session's ResponseStarted event.
func (a *Auditor) SessionStarted(s *session.Session) {
	base, r := sessionBase(s)
	if r != nil {
		r.started.Store(true)
	}
	a.emit(sessionStarted(base, s, a.now()))
}

// SessionEnded emits the ResponseComplete event of an upgraded session. A
// session that was never upgraded is left to the filter, which knows the
// Status the client got.
func (a *Auditor) SessionEnded(s *session.Session, e session.Ended) {
	base, r := sessionBase(s)
	if e.Upgraded {
		a.emit(sessionEnded(base, s, e, a.now()))
		return
	}
	if r != nil {
		r.mu.Lock()
		r.ended = &sessionEnd{s: s, e: e}
		r.mu.Unlock()
	}
}

// Forwarded emits the event of one forwarded connection.
func (a *Auditor) Forwarded(s *session.Session, rec relay.Record) {
	base, _ := sessionBase(s)
	a.emit(forwarded(base, s, rec, a.now()))
}

// Close flushes and closes the sinks, waiting until ctx ends at most. Call
// it once sessions have drained; later events are dropped. A nil Auditor
// does nothing.
func (a *Auditor) Close(ctx context.Context) {
	if a == nil {
		return
	}
	a.closeOnce.Do(func() {
		var wg sync.WaitGroup
		for _, s := range a.sinks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.Close(ctx)
			}()
		}
		wg.Wait()
	})
}
