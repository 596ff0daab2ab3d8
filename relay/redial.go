package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/moby/spdystream/spdy"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Defaults for Reconnect.
const (
	DefaultRedialAttempts   = 5
	DefaultRedialBackoff    = 100 * time.Millisecond
	DefaultRedialMaxBackoff = 5 * time.Second
)

// OutcomeKubeletUnreachable: the kubelet connection was gone when the pair
// came and no new one could be dialed; Record.Message says why.
const OutcomeKubeletUnreachable Outcome = "kubelet_unreachable"

func init() { Outcomes = append(Outcomes, OutcomeKubeletUnreachable) }

// Reconnect configures the replacement of a lost kubelet connection. The
// gateway's connection to the kubelet is its own business: when it dies
// (kubelet restart or GOAWAY, a cut network, a ping timeout) the client's
// session stays up, the pairs that were on it end, and the next pair the
// client opens dials a new connection.
type Reconnect struct {
	// Redial dials a new kubelet connection (re-resolving the pod first: it
	// may have moved). nil ends the session with its kubelet connection.
	// Wrap an error with Permanent when retrying cannot help (pod gone).
	Redial func(ctx context.Context) (Conn, error)
	// RedialAttempts bounds the dials per reconnection, all within
	// Options.CreationTimeout; DefaultRedialAttempts when zero.
	RedialAttempts int
	// RedialBackoff is the wait after the first failed dial; it doubles up
	// to RedialMaxBackoff. Defaults when zero.
	RedialBackoff, RedialMaxBackoff time.Duration
	// LossMessage writes the reason on the error stream of each pair the
	// loss ends, as the kubelet reports a failed forward. client-go (every
	// version since 1.23, kubectl included) then closes its whole session,
	// so the default resets the pair's streams instead: client-go closes
	// that one local connection and the session goes on; the reason is in
	// the pair's Record. A pod that is gone (Permanent) is always told.
	LossMessage bool
	// ResetKubeletErrors keeps the kubelet's error-stream text (a failed
	// forward: "error forwarding port …") from the client, which then sees
	// only the resets that follow it: client-go closes that one local
	// connection instead of its whole session, so a session outlives a pod
	// whose listener restarts (containerd reports "connection refused"
	// meanwhile). The text stays in the Record. Independent of Redial.
	ResetKubeletErrors bool
	// OnLoss, if set, is told of each lost kubelet connection (its node and
	// why), outside the relay's lock: for the session's log.
	OnLoss func(node string, err error)
}

func (c Reconnect) withDefaults() Reconnect {
	if c.RedialAttempts <= 0 {
		c.RedialAttempts = DefaultRedialAttempts
	}
	if c.RedialBackoff <= 0 {
		c.RedialBackoff = DefaultRedialBackoff
	}
	if c.RedialMaxBackoff <= 0 {
		c.RedialMaxBackoff = DefaultRedialMaxBackoff
	}
	return c
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks a Redial error no retry can fix: the dial stops at once
// and the waiting pairs get the message even without LossMessage.
func Permanent(err error) error { return &permanentError{err} }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var pe *permanentError
	return errors.As(err, &pe)
}

// send writes o's frames in order. A failed write to a kubelet connection
// the session can replace closes that connection (its reader then reports
// the loss); any other failed write ends the caller's loop.
func (r *relay) send(o outbox) error {
	for _, w := range o {
		if err := w.to.send(w); err != nil {
			if err := r.writeFailed(w.to, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeFailed handles a failed write to dst: the end of the session unless
// dst is a replaceable kubelet connection.
func (r *relay) writeFailed(dst *side, err error) error {
	if dst == r.client || r.o.Redial == nil {
		return &writeError{dst, err}
	}
	r.mu.Lock()
	if !dst.lost && dst.cause == nil {
		dst.cause = fmt.Errorf("write: %w", err)
	}
	r.mu.Unlock()
	_ = dst.c.Close()
	return nil
}

// wait queues st until a new kubelet connection is dialed (r.mu held).
func (r *relay) wait(st *stream, f *spdy.SynStreamFrame, h http.Header) {
	st.syn, st.h = f, h
	r.waiting = append(r.waiting, st)
	if !r.dialing && !r.ending {
		r.dialing = true
		r.dialWG.Add(1)
		go r.redial()
	}
}

// redial dials with bounded exponential backoff, all within the creation
// timeout the waiting pairs have, and installs the new connection.
func (r *relay) redial() {
	defer r.dialWG.Done()
	ctx, cancel := context.WithTimeout(r.stopCtx, r.o.CreationTimeout)
	defer cancel()
	b := wait.Backoff{Duration: r.o.RedialBackoff, Factor: 2, Cap: r.o.RedialMaxBackoff, Steps: r.o.RedialAttempts}
	var c Conn
	var err error
	for attempt := 1; ; attempt++ {
		if c, err = r.o.Redial(ctx); err == nil {
			break
		}
		if IsPermanent(err) || attempt >= r.o.RedialAttempts || ctx.Err() != nil {
			if !IsPermanent(err) {
				err = fmt.Errorf("%d attempts: %w", attempt, err)
			}
			break
		}
		t := time.NewTimer(b.Step())
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	r.dialed(c, err)
}

// dialed installs a new kubelet connection and sends it the waiting
// streams, or fails them with err.
func (r *relay) dialed(c Conn, err error) {
	var o outbox
	r.mu.Lock()
	r.dialing = false
	waiting := r.waiting
	r.waiting = nil
	if err == nil && r.ending {
		r.mu.Unlock()
		_ = c.Close()
		return
	}
	if err != nil {
		msg := fmt.Sprintf("pfgateway: could not reconnect to the kubelet: %v; this forwarded connection ended, the session goes on", err)
		tell := r.o.LossMessage || IsPermanent(err)
		for _, st := range waiting {
			if r.byClient[st.cid] == st && st.p != nil && !st.p.denied {
				r.endLost(st.p, OutcomeKubeletUnreachable, msg, tell, &o)
			} else if r.byClient[st.cid] == st && st.p == nil {
				o.rst(r.client, st.cid, rstCancel)
				r.remove(st)
			}
			st.syn, st.h = nil, nil
		}
		r.mu.Unlock()
		_ = r.send(o)
		r.emit()
		return
	}
	k := newKubeletSide(c)
	r.kubelet = k
	r.reconnects++
	r.restartLiveness()
	for _, st := range waiting {
		if r.byClient[st.cid] == st && st.kid == 0 && (st.p == nil || !st.p.denied) {
			k.opened(st)
			o = append(o, out{to: k, syn: st.syn, id: st.kid, h: st.h})
		}
		st.syn, st.h = nil, nil
	}
	// The SYN_STREAMs go out before anything the client reader sends on
	// their streams: it needs k's write lock, taken before r.mu is released.
	k.wmu.Lock()
	r.kwg.Add(1)
	r.mu.Unlock()
	go r.serveKubelet(k)
	var werr error
	for _, w := range o {
		if werr = k.sendLocked(w); werr != nil {
			break
		}
	}
	k.wmu.Unlock()
	if werr != nil {
		_ = r.writeFailed(k, werr)
	}
}

// lose ends the pairs of kubelet connection k, whose reader ended with
// err, and keeps the session: the next pair dials a new connection.
func (r *relay) lose(k *side, err error) {
	var o outbox
	r.mu.Lock()
	if r.ending || k.lost {
		r.mu.Unlock()
		_ = k.c.Close()
		return
	}
	// Marked lost before it is closed (below, outside the lock: a TLS
	// close may wait on the peer): writes that fail on it from now on are
	// not why it was lost.
	k.lost = true
	if k.cause != nil {
		err = k.cause
	}
	r.losses++
	msg := fmt.Sprintf("pfgateway: lost the connection to the kubelet on node %s: %s; this forwarded connection ended, the session goes on", k.c.Node, lossReason(err))
	pairs := map[*pair]struct{}{}
	for _, st := range k.streams {
		if st.p == nil {
			o.rst(r.client, st.cid, rstCancel) // a duplicate stream, in no pair
			r.remove(st)
			continue
		}
		pairs[st.p] = struct{}{}
	}
	for p := range pairs {
		r.endLost(p, OutcomeKubeletGone, msg, r.o.LossMessage, &o)
	}
	r.mu.Unlock()
	_ = k.c.Close()
	_ = r.send(o)
	r.emit()
	if r.o.OnLoss != nil {
		r.o.OnLoss(k.c.Node, err)
	}
}

// endLost ends pair p for the client because its kubelet connection is
// gone (r.mu held): with msg on its error stream when tell, as the kubelet
// reports a failed forward, else by resetting its streams. A pair still
// waiting for its data stream stays known, refused, so that stream is
// refused the same way instead of reaching a kubelet that never saw its
// error stream.
func (r *relay) endLost(p *pair, why Outcome, msg string, tell bool, o *outbox) {
	p.forced = why
	p.denied = true
	if len(p.msg) == 0 {
		p.msg = []byte(msg) // for the Record
	}
	for _, s := range []*stream{p.errS, p.dataS} {
		if s == nil {
			continue
		}
		if s.kid != 0 {
			delete(s.k.streams, s.kid)
			s.kid = 0
		}
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
	}
	// A client whose error stream was answered goes on to its data stream.
	half := !p.standalone && p.dataS == nil && p.errS != nil && (tell || p.errS.replied)
	if tell {
		p.denyMsg = msg
		for _, s := range []*stream{p.errS, p.dataS} {
			if s != nil && !s.replied {
				s.replied = true
				o.reply(r.client, s.cid, 0, http.Header{})
			}
		}
		if !half {
			r.failPair(p, o)
			return
		}
	} else {
		for _, s := range []*stream{p.dataS, p.errS} {
			if s == nil {
				continue
			}
			o.rst(r.client, s.cid, rstCancel)
			if half {
				// Unmapped without ending the pair: its other half may come.
				delete(r.byClient, s.cid)
				s.p = nil
				p.open--
				if s == p.errS {
					p.errS = nil
				} else {
					p.dataS = nil
				}
			} else {
				r.remove(s)
			}
		}
		if !half {
			return
		}
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	p.timer = time.AfterFunc(r.o.CreationTimeout, func() { r.pairTimeout(p) })
}

// lossReason words why a kubelet connection ended.
func lossReason(err error) string {
	switch {
	case err == nil || errors.Is(err, io.EOF):
		return "the kubelet closed the connection"
	case errors.Is(err, errGoAway):
		return "the kubelet sent GOAWAY"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection was cut in the middle of a frame"
	}
	return err.Error()
}
