package relay

import (
	"errors"
	"fmt"
	"time"
)

// ErrKubeletPingTimeout ends a session whose kubelet did not echo a ping
// within Options.KubeletPingTimeout: its side is then treated as gone.
var ErrKubeletPingTimeout = errors.New("the kubelet did not answer a ping")

// liveness is the kubelet ping state, guarded by relay.mu. One
// time.AfterFunc timer per session drives it, so an idle session holds no
// goroutine: a callback runs only when a ping is due or overdue. Wall
// clock throughout (not Options.Now): the timer runs on it.
type liveness struct {
	timer    *time.Timer
	lastSent time.Time // the gateway's last ping to the kubelet, mirrored ones included
	awaiting bool      // a ping is out and no echo has come since
	sentAt   time.Time // when the awaited ping was sent
	expired  bool      // the timeout fired: the session ends for it
	stopped  bool
}

// startLiveness arms the kubelet ping timer; a zero interval disables it.
func (r *relay) startLiveness() {
	if r.o.KubeletPingInterval <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lv.lastSent = time.Now()
	r.lv.timer = time.AfterFunc(r.o.KubeletPingInterval, r.pingTick)
}

// stopLiveness stops the timer for good and says whether the ping timeout
// is what ended the session.
func (r *relay) stopLiveness() (expired bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lv.stopped = true
	if r.lv.timer != nil {
		r.lv.timer.Stop()
	}
	return r.lv.expired
}

// pingTick sends a ping when none went out for an interval (the mirrored
// client pings count, so the kubelet never gets two), and closes the
// kubelet connection when the awaited echo is overdue: that wakes the
// kubelet reader, and the teardown reports ErrKubeletPingTimeout.
func (r *relay) pingTick() {
	interval, timeout := r.o.KubeletPingInterval, r.o.KubeletPingTimeout
	r.mu.Lock()
	lv := &r.lv
	if lv.stopped || lv.expired {
		r.mu.Unlock()
		return
	}
	now := time.Now()
	k := r.kubelet
	switch {
	case k.lost:
		// Re-armed when a new connection is installed.
	case lv.awaiting && now.Sub(lv.sentAt) >= timeout && r.o.Redial != nil:
		// The connection is taken for gone; the session goes on.
		lv.awaiting = false
		if k.cause == nil {
			k.cause = r.pingTimeoutErr()
		}
		r.mu.Unlock()
		_ = k.c.Close()
		return
	case lv.awaiting && now.Sub(lv.sentAt) >= timeout:
		lv.expired = true
		r.mu.Unlock()
		_ = k.c.Close()
		return
	case lv.awaiting:
		lv.timer.Reset(lv.sentAt.Add(timeout).Sub(now))
	case now.Sub(lv.lastSent) >= interval:
		id := r.nextPingID(k)
		lv.awaiting, lv.sentAt, lv.lastSent = true, now, now
		// Armed before the write: a kubelet that stopped reading blocks the
		// write, and the timeout still has to fire and close it.
		lv.timer.Reset(timeout)
		r.mu.Unlock()
		_ = k.writeOwn(appendPing(nil, id)) // a failed write ends the kubelet reader anyway
		return
	default:
		lv.timer.Reset(lv.lastSent.Add(interval).Sub(now))
	}
	r.mu.Unlock()
}

// pingSentLocked notes a ping the gateway is about to send the kubelet for
// a client (r.mu held): it counts as the gateway's own.
func (r *relay) pingSentLocked() {
	lv := &r.lv
	now := time.Now()
	lv.lastSent = now
	if !lv.awaiting {
		lv.awaiting, lv.sentAt = true, now
		if lv.timer != nil && !lv.stopped && !lv.expired {
			lv.timer.Reset(r.o.KubeletPingTimeout)
		}
	}
}

// pingEchoed notes the kubelet's echo of one of the gateway's pings; an
// echo from a replaced connection says nothing of the current one.
func (r *relay) pingEchoed(k *side) {
	r.mu.Lock()
	if k == r.kubelet {
		r.lv.awaiting = false
	}
	r.mu.Unlock()
}

// restartLiveness starts the ping clock over for a new kubelet connection
// (r.mu held).
func (r *relay) restartLiveness() {
	lv := &r.lv
	lv.awaiting = false
	lv.lastSent = time.Now()
	if lv.timer != nil && !lv.stopped {
		lv.timer.Reset(r.o.KubeletPingInterval)
	}
}

// nextPingID returns the gateway's next ping id toward kubelet k (r.mu
// held): odd, as spdystream's client numbers them, wrapping like its Ping.
func (r *relay) nextPingID(k *side) uint32 {
	id := k.pingID
	k.pingID += 2
	if k.pingID > maxStreamID {
		k.pingID = 1
	}
	return id
}

func (r *relay) pingTimeoutErr() error {
	return fmt.Errorf("%w within %v", ErrKubeletPingTimeout, r.o.KubeletPingTimeout)
}
