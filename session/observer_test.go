package session

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/relay"
)

type recordingObserver struct {
	mu     sync.Mutex
	calls  []string
	ended  []Ended
	record []relay.Record
}

func (o *recordingObserver) SessionStarted(s *Session) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, "started "+s.ID)
}

func (o *recordingObserver) SessionEnded(s *Session, e Ended) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, "ended "+s.ID)
	o.ended = append(o.ended, e)
}

func (o *recordingObserver) Forwarded(s *Session, rec relay.Record) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, "forwarded "+s.ID)
	o.record = append(o.record, rec)
}

func TestObserverSeesTheSessionsLife(t *testing.T) {
	r, _ := newRegistry()
	o := &recordingObserver{}
	r.SetObserver(o)

	s, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY})
	s.SetNode("n1")
	s.Upgraded(closerFunc(func() error { return nil }))
	rec := relay.Record{RequestID: "0", Port: 80, Up: 3, Down: 4, Outcome: relay.OutcomeClientClosed}
	s.Forwarded(rec)
	s.AddUp(10)
	s.AddDown(20)
	s.End(metrics.OutcomeCompleted, "bye")
	s.End(metrics.OutcomeCompleted, "twice")

	rejected, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY})
	rejected.End(metrics.OutcomeRejected, "pods \"x\" not found")

	want := []string{"started " + s.ID, "forwarded " + s.ID, "ended " + s.ID, "ended " + rejected.ID}
	if !reflect.DeepEqual(o.calls, want) {
		t.Fatalf("calls %v, want %v", o.calls, want)
	}
	if !reflect.DeepEqual(o.record, []relay.Record{rec}) {
		t.Errorf("records %+v", o.record)
	}
	e := o.ended[0]
	if e.Outcome != metrics.OutcomeCompleted || e.Reason != "bye" || !e.Upgraded || e.Node != "n1" || e.Up != 10 || e.Down != 20 || e.Forwards != 1 || e.Duration <= 0 || e.Duration > time.Minute {
		t.Errorf("ended %+v", e)
	}
	if e := o.ended[1]; e.Outcome != metrics.OutcomeRejected || e.Upgraded || e.Node != "" {
		t.Errorf("rejected session ended %+v", e)
	}
	if s.Node() != "n1" {
		t.Errorf("Node() = %q", s.Node())
	}
}
