package relay

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// OutcomeSessionClosed: the gateway ended the session (shutdown, an
// administrator, a session limit, the pod or node gone) while the pair was
// open; Record.Message is what the client was told.
const OutcomeSessionClosed Outcome = "session_closed"

// stopLinger bounds the wait, after a stop's messages, for the client to
// hang up by itself: client-go logs the message ("an error occurred
// forwarding …") and then closes its connection. A GOAWAY sent at once would
// race that log (spdystream closes a connection that went away as soon as
// its last stream is gone, and kubectl then exits with "lost connection to
// pod"), and closing a socket with unread bytes sends a TCP RST, which can
// discard what was still queued for the peer: the message among them.
const stopLinger = time.Second

// stopBound bounds a whole stop: the messages, the linger and the GOAWAY.
// A client that stopped reading holds it no longer than this.
const stopBound = goAwayGrace + stopLinger + goAwayGrace

// Stopper ends a running relay with a message for the client (Options.Stop).
// It is the closer a stream-aware session registers (session.Upgraded), so
// every close the gateway initiates can tell the client why.
type Stopper struct {
	closer io.Closer

	mu   sync.Mutex
	msg  string       // the first message, kept until a relay takes it
	sent bool         // the message went to a relay, or none may go any more
	fire func(string) // the running relay's; nil before it runs and after it ended
}

// NewStopper returns a Stopper whose Close is c's.
func NewStopper(c io.Closer) *Stopper { return &Stopper{closer: c} }

// CloseWithMessage asks the relay to write msg on the error stream of every
// forwarded connection still open, send the client a GOAWAY and close both
// connections. It does not wait: a goroutine of the relay's does the
// writes, bounded in time. Only the first message counts.
func (s *Stopper) CloseWithMessage(msg string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent || s.msg != "" || msg == "" {
		return nil
	}
	s.msg = msg
	if s.fire != nil {
		s.sent = true
		s.fire(msg)
	}
	return nil
}

// Close closes both connections at once, without a message.
func (s *Stopper) Close() error { return s.closer.Close() }

// attach hands fire the message, at once if it came before the relay ran:
// a stopping session has a goroutine for it, an idle one none.
func (s *Stopper) attach(fire func(string)) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fire = fire
	if s.msg != "" && !s.sent {
		s.sent = true
		fire(s.msg)
	}
}

// detach ends the hand-over: the relay is over.
func (s *Stopper) detach() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fire, s.sent = nil, true
}

// stopWith is a Stop's own goroutine (Stopper.attach, stopWG): it tells the
// client msg, waits up to stopLinger for either side to end the session,
// then ends it itself with a GOAWAY to the client.
func (r *relay) stopWith(msg string) {
	defer r.stopWG.Done()
	if r.over() {
		return
	}
	// Bound the writes (the client may not be reading): a timer closes
	// both connections if one is still stuck behind a blocked write, and a
	// write deadline bounds the writes that follow. The deadline is set
	// under the write lock (gorilla's WebSocket deadline is a plain field
	// its writer reads), so a write blocked before it is waited out, until
	// the timer fires.
	force := time.AfterFunc(stopBound, r.closeBoth)
	defer force.Stop()
	if r.client.c.SetWriteDeadline != nil {
		r.client.wmu.Lock()
		_ = r.client.c.SetWriteDeadline(time.Now().Add(stopBound))
		r.client.wmu.Unlock()
	}
	r.stop(msg)
	t := time.NewTimer(stopLinger)
	defer t.Stop()
	select {
	case <-r.overCh: // the client hung up, or the kubelet connection ended
		return
	case <-t.C:
	}
	r.mu.Lock()
	lastGood := r.lastCID
	r.mu.Unlock()
	_ = r.client.write(appendGoAway(nil, lastGood)) // within the stop's deadline
	if r.end(result{r.client, nil}) {
		_ = r.client.c.Close() // wakes the client reader; its teardown closes the rest
	}
}

// stop tells the client msg the way the kubelet reports a failed forward:
// on every open pair, a reply if none was sent yet, the message on its error
// stream, then both streams reset (client-go's PortForwarder then logs
// "an error occurred forwarding L -> R: msg" and closes its connection).
// A stream the client opens from then on is refused with the same message
// (clientSyn): dropping it would leave client-go waiting 30 s for a reply
// that never comes.
func (r *relay) stop(msg string) {
	var o outbox
	r.mu.Lock()
	r.stopMsg = msg
	for p := range r.live {
		if p.denied {
			continue // refused already, with its own message or none
		}
		p.denied, p.forced, p.denyMsg = true, OutcomeSessionClosed, msg
		if !p.standalone && (p.errS == nil) != (p.dataS == nil) {
			// Its other stream may still come (client-go opens the data
			// stream once the error stream is replied): it is refused alone,
			// not counted as a forward of its own (clientSyn).
			if r.stopHalf == nil {
				r.stopHalf = map[string]struct{}{}
			}
			r.stopHalf[p.rec.RequestID] = struct{}{}
		}
		for _, s := range []*stream{p.errS, p.dataS} {
			if s != nil && !s.replied {
				s.replied = true
				o.reply(r.client, s.cid, 0, http.Header{})
			}
		}
		r.failPair(p, &o)
	}
	r.mu.Unlock()
	_ = r.send(o)
	r.emit()
}
