package main

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
)

// newSession wraps conn and watches it for the gateway ending it.
func newSession(conn httpstream.Connection, gw *gateway, proto string) *session {
	s := &session{conn: conn, gw: gw, proto: proto, nextID: new(atomic.Int64), lost: make(chan struct{})}
	go func() {
		<-conn.CloseChan()
		if !s.closed.Load() {
			s.lostAt = time.Now()
			close(s.lost)
		}
	}()
	return s
}

// isLost says whether the gateway ended the session.
func (s *session) isLost() bool {
	select {
	case <-s.lost:
		return true
	default:
		return false
	}
}

// waitLost waits up to d for the gateway to end the session; it returns
// when it did.
func (s *session) waitLost(d time.Duration) (time.Time, bool) {
	select {
	case <-s.lost:
		return s.lostAt, true
	case <-time.After(d):
		return time.Time{}, false
	}
}

// errLostCreating: the gateway ended the session while a stream waited
// for its reply.
var errLostCreating = errors.New("the gateway ended the session while the stream waited for its reply")

// create creates a stream. On an opaque gateway, which ends sessions when
// their kubelet connection goes, it stops waiting when the session ends:
// spdystream's CreateStream does not watch its connection and would wait
// out its 30 s reply timeout (client-go's PortForwarder does not notice,
// since ForwardPorts returns on the connection's CloseChan). The stream,
// if it comes, is reset by the abandoned wait.
func (s *session) create(h http.Header) (httpstream.Stream, error) {
	if s.gw.reconnects {
		return s.conn.CreateStream(h)
	}
	type created struct {
		st  httpstream.Stream
		err error
	}
	ch := make(chan created, 1)
	go func() { st, err := s.conn.CreateStream(h); ch <- created{st, err} }()
	select {
	case c := <-ch:
		return c.st, c.err
	case <-s.lost:
		go func() {
			if c := <-ch; c.st != nil {
				_ = c.st.Reset()
			}
		}()
		return nil, errLostCreating
	}
}
