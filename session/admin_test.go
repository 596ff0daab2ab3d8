package session

import (
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/metrics"
)

func TestList(t *testing.T) {
	r, _ := newRegistry()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	older, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolWebSocketLegacy, User: "bob", Groups: []string{"ops"},
		Source: "10.0.0.2:5000", Namespace: "ns", Pod: "p2", Ports: []int32{80, 81}, Start: start})
	newer, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, User: "alice", Groups: []string{"devs"},
		Source: "10.0.0.1:4000", Namespace: "ns", Pod: "p1", Start: start.Add(time.Second)})
	newer.SetNode("n1")
	newer.Upgraded(closerFunc(func() error { return nil }))
	newer.AddUp(5)
	newer.AddDown(7)
	newer.AddDown(1)
	newer.forwards.Add(2)
	last := time.Unix(0, newer.last.Load())

	now := start.Add(time.Minute)
	got := r.List(now)
	want := []Snapshot{{
		ID: older.ID, User: "bob", Groups: []string{"ops"}, Source: "10.0.0.2:5000", Cluster: "c", Namespace: "ns", Pod: "p2",
		Protocol: metrics.ProtocolWebSocketLegacy, Ports: []int32{80, 81}, StartTime: start, LastActivity: start,
		AgeSeconds: 60, IdleSeconds: 60,
	}, {
		ID: newer.ID, User: "alice", Groups: []string{"devs"}, Source: "10.0.0.1:4000", Cluster: "c", Namespace: "ns", Pod: "p1",
		Node: "n1", Protocol: metrics.ProtocolSPDY, Upgraded: true, BytesUp: 5, BytesDown: 8, Forwards: 2,
		StartTime: start.Add(time.Second), LastActivity: last, AgeSeconds: 59, IdleSeconds: 0, // last is the real clock, after now
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List:\n got %+v\nwant %+v", got, want)
	}
	newer.End(metrics.OutcomeCompleted, "")
	if got := r.List(now); len(got) != 1 || got[0].ID != older.ID {
		t.Fatalf("after End: %+v", got)
	}
}

func TestIdle(t *testing.T) {
	t.Run("should count from the start until a byte moves", func(t *testing.T) {
		start := time.Now().Add(-time.Hour)
		s := &Session{Start: start}
		if got := s.LastActivity(); !got.Equal(start) {
			t.Fatalf("LastActivity %v, want the start %v", got, start)
		}
		if got := s.Snapshot(start.Add(90 * time.Second)).IdleSeconds; got != 90 {
			t.Fatalf("idle %v", got)
		}
	})
	t.Run("should restart on a byte in either direction", func(t *testing.T) {
		r, _ := newRegistry()
		for _, add := range []func(*Session){func(s *Session) { s.AddUp(1) }, func(s *Session) { s.AddDown(1) }} {
			s, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY, Start: time.Now().Add(-time.Hour)})
			before := time.Now()
			add(s)
			after := time.Now()
			if last := s.LastActivity(); last.Before(before) || last.After(after) {
				t.Fatalf("LastActivity %v not within [%v, %v]", last, before, after)
			}
			if idle := s.Snapshot(after.Add(3 * time.Second)).IdleSeconds; idle < 3 || idle > 3+after.Sub(before).Seconds() {
				t.Fatalf("idle %v, want about 3s", idle)
			}
			s.End(metrics.OutcomeCompleted, "")
		}
	})
	t.Run("should not allocate on the data path", func(t *testing.T) {
		r, _ := newRegistry()
		s, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY})
		if n := testing.AllocsPerRun(100, func() { s.AddUp(1); s.AddDown(1) }); n != 0 {
			t.Fatalf("%v allocations per AddUp+AddDown", n)
		}
	})
}

func TestTerminate(t *testing.T) {
	t.Run("should return ErrNotFound for an unknown id", func(t *testing.T) {
		r, _ := newRegistry()
		if err := r.Terminate("nope", "test"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("should close a live session and end it as terminated", func(t *testing.T) {
		r, reg := newRegistry()
		o := &recordingObserver{}
		r.SetObserver(o)
		s, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY})
		other, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY})
		var closed atomic.Int32
		// As the splice does: the closed connection ends it with its own reason.
		s.Upgraded(closerFunc(func() error {
			closed.Add(1)
			go s.End(metrics.OutcomeCompleted, "use of closed connection")
			return nil
		}))
		other.Upgraded(closerFunc(func() error { t.Error("the other session was closed"); return nil }))
		if err := r.Terminate(s.ID, "127.0.0.1:5555"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return r.Len() == 1 })
		if closed.Load() != 1 {
			t.Fatalf("closer called %d times", closed.Load())
		}
		o.mu.Lock()
		e := o.ended[0]
		o.mu.Unlock()
		if e.Outcome != metrics.OutcomeTerminated || e.TerminatedBy != "127.0.0.1:5555" || e.Reason != "terminated through the admin API by 127.0.0.1:5555" {
			t.Fatalf("ended %+v", e)
		}
		if got := sumLabel(t, reg, "pfgateway_portforward_sessions_total", "outcome", string(metrics.OutcomeTerminated)); got != 1 {
			t.Fatalf("terminated = %v", got)
		}
		if err := r.Terminate(s.ID, "again"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second Terminate: %v", err)
		}
	})
	t.Run("should close a session still being set up once it is upgraded", func(t *testing.T) {
		r, _ := newRegistry()
		s, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY})
		if err := r.Terminate(s.ID, "op"); err != nil {
			t.Fatal(err)
		}
		var closed atomic.Bool
		s.Upgraded(closerFunc(func() error { closed.Store(true); return nil }))
		if !closed.Load() {
			t.Fatal("Upgraded did not close a terminated session")
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
