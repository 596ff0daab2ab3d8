package relay

import "time"

// answerGrace bounds how long a session that ends waits for the kubelet to
// answer the streams it was last sent (awaitAnswers); relay.answerGrace
// is it, but in the fuzz harness, whose kubelet is often silent.
const answerGrace = time.Second

// Why a session waits for the kubelet's answers before it parts: a
// spdystream kubelet reads the GOAWAY or EOF that ends its connection ahead
// of the SYN_STREAMs still queued for its frame workers, and then fails
// their replies (idleAwareFramer.WriteFrame returns EOF once closeChan is
// closed). A stream whose reply failed keeps Stream.replied unset, so the
// kubelet's deferred Close of it waits for a reply forever, and a RST that
// reaches it next writes replied without the lock (handleResetFrame), a
// data race the race detector reports in the test kubelet. Directly a
// client cannot end its connection with a stream creation in flight, since
// client-go waits for each reply; an early reply lets it do so (client-go's
// Close resets the data stream it was just answered, then sends GOAWAY),
// so the gateway holds back its GOAWAY and close until the kubelet has
// answered, as it would have before the client saw a reply directly.

// opened maps st to kubelet connection k under its next id and notes that
// k owes it an answer. r.mu held.
func (k *side) opened(st *stream) {
	st.kid, st.k = k.nextKID, k
	k.nextKID += 2
	k.streams[st.kid] = st
	if k.unanswered == nil {
		k.unanswered = map[uint32]struct{}{}
	}
	k.unanswered[st.kid] = struct{}{}
}

// answered notes that k answered stream id (SYN_REPLY or RST), or that the
// gateway stopped waiting for it. r.mu held.
func (r *relay) answered(k *side, id uint32) {
	if _, ok := k.unanswered[id]; !ok {
		return
	}
	delete(k.unanswered, id)
	if len(k.unanswered) == 0 {
		k.unanswered = nil // an idle session keeps no map
		r.wakeAnswers()
	}
}

// wakeAnswers wakes awaitAnswers to look again.
func (r *relay) wakeAnswers() {
	select {
	case r.answers <- struct{}{}:
	default:
	}
}

// awaitAnswers waits, at most r.answerGrace, until kubelet connection k has
// answered every stream it was sent, or its reader ended.
func (r *relay) awaitAnswers(k *side) {
	var t *time.Timer
	for {
		r.mu.Lock()
		wait := len(k.unanswered) > 0 && !k.lost && !k.readerEnded
		r.mu.Unlock()
		if !wait {
			break
		}
		if t == nil {
			t = time.NewTimer(r.answerGrace)
			defer t.Stop()
		}
		select {
		case <-r.answers:
		case <-t.C:
			return
		}
	}
}
