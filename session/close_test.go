package session

import (
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/relay"
)

// msgCloser records how a session's connections were closed.
type msgCloser struct{ got chan string }

func newMsgCloser() *msgCloser { return &msgCloser{got: make(chan string, 4)} }

func (c *msgCloser) Close() error                      { c.got <- "(closed without a message)"; return nil }
func (c *msgCloser) CloseWithMessage(msg string) error { c.got <- msg; return nil }

func (c *msgCloser) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-c.got:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("the session was not closed")
		return ""
	}
}

// endObserver keeps the Ended of each session.
type endObserver struct{ ended chan Ended }

func (o endObserver) SessionStarted(*Session)          {}
func (o endObserver) SessionEnded(_ *Session, e Ended) { o.ended <- e }
func (o endObserver) Forwarded(*Session, relay.Record) {}

func TestForceClose(t *testing.T) {
	tests := []struct {
		name        string
		close       func(r *Registry, s *Session)
		wantMsg     string
		wantOutcome metrics.Outcome
		wantReason  string
	}{
		{name: "should tell the client why and report the forced outcome",
			close: func(_ *Registry, s *Session) {
				s.ForceClose(metrics.OutcomePodDeleted, "pod default/web-0 (uid u) was deleted", "pfgateway: pod default/web-0 was deleted")
			},
			wantMsg: "pfgateway: pod default/web-0 was deleted", wantOutcome: metrics.OutcomePodDeleted, wantReason: "pod default/web-0 (uid u) was deleted"},
		{name: "should keep the first forced close",
			close: func(_ *Registry, s *Session) {
				if !s.ForceClose(metrics.OutcomeNodeDeleted, "node gone", "pfgateway: node gone") {
					t.Error("the first ForceClose reported it was not first")
				}
				if s.ForceClose(metrics.OutcomePodDeleted, "pod gone", "pfgateway: pod gone") {
					t.Error("a second ForceClose reported it was first")
				}
			},
			wantMsg: "pfgateway: node gone", wantOutcome: metrics.OutcomeNodeDeleted, wantReason: "node gone"},
		{name: "should tell a terminated session an administrator ended it",
			close: func(r *Registry, s *Session) {
				if err := r.Terminate(s.ID, "admin API client 127.0.0.1:1"); err != nil {
					t.Error(err)
				}
			},
			wantMsg: MessageTerminated, wantOutcome: metrics.OutcomeTerminated, wantReason: "terminated through the admin API by admin API client 127.0.0.1:1"},
		{name: "should tell a drained session the gateway is shutting down",
			close:   func(r *Registry, _ *Session) { go r.Drain(0) },
			wantMsg: MessageShutdown, wantOutcome: metrics.OutcomeClosedByGateway, wantReason: "the gateway shut down after --shutdown-grace-period"},
		{name: "should name the limit to an idle session",
			close: func(r *Registry, s *Session) {
				s.closeBy(metrics.OutcomeIdleTimeout, "no traffic in either direction for --session-idle-timeout (5m0s)")
			},
			wantMsg: "pfgateway: no traffic in either direction for --session-idle-timeout (5m0s)", wantOutcome: metrics.OutcomeIdleTimeout,
			wantReason: "no traffic in either direction for --session-idle-timeout (5m0s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRegistry()
			obs := endObserver{ended: make(chan Ended, 1)}
			r.SetObserver(obs)
			s, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY})
			c := newMsgCloser()
			s.Upgraded(c)
			tt.close(r, s)
			if got := c.next(t); got != tt.wantMsg {
				t.Errorf("closed with %q, want %q", got, tt.wantMsg)
			}
			s.End(metrics.OutcomeCompleted, "client connection: use of closed network connection")
			e := <-obs.ended
			if e.Outcome != tt.wantOutcome || e.Reason != tt.wantReason {
				t.Errorf("ended %s %q, want %s %q", e.Outcome, e.Reason, tt.wantOutcome, tt.wantReason)
			}
		})
	}
}

func TestForceCloseBeforeTheUpgrade(t *testing.T) {
	r, _ := newRegistry()
	s, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY})
	s.ForceClose(metrics.OutcomePodDeleted, "gone", "pfgateway: gone")
	c := newMsgCloser()
	s.Upgraded(c)
	if got := c.next(t); got != "pfgateway: gone" {
		t.Errorf("closed at the upgrade with %q", got)
	}
	plain := make(chan struct{}, 1)
	s2, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolWebSocketLegacy})
	s2.Upgraded(closerFunc(func() error { plain <- struct{}{}; return nil }))
	s2.ForceClose(metrics.OutcomeTerminated, "by someone", MessageTerminated)
	select {
	case <-plain:
	case <-time.After(5 * time.Second):
		t.Fatal("a closer without messages was not closed")
	}
}

func TestAddObserver(t *testing.T) {
	r, _ := newRegistry()
	a, b, c := endObserver{make(chan Ended, 1)}, endObserver{make(chan Ended, 1)}, endObserver{make(chan Ended, 1)}
	r.SetObserver(a)
	r.AddObserver(b)
	r.AddObserver(c)
	s, _ := r.Begin(&Session{Cluster: "c", Protocol: metrics.ProtocolSPDY})
	s.End(metrics.OutcomeRejected, "")
	for i, o := range []endObserver{a, b, c} {
		select {
		case <-o.ended:
		default:
			t.Errorf("observer %d was not told", i)
		}
	}
}
