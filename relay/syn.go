package relay

import (
	"net/http"
	"strconv"
	"time"

	"github.com/moby/spdystream/spdy"
)

// clientSyn opens, on the kubelet connection, the stream the client opened,
// unless the gateway refuses it.
func (r *relay) clientSyn(f *spdy.SynStreamFrame, o *outbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cid := uint32(f.StreamId)
	if r.closing {
		return
	}
	// spdystream's validateStreamId: ids only grow.
	if cid < r.nextCID {
		o.rst(r.client, cid, rstProtocolError)
		return
	}
	r.nextCID, r.lastCID = cid+2, cid

	h := f.Headers
	kind := h.Get(hdrStreamTyp)
	portHdr := h.Get(hdrPort)
	port, portOK := parsePort(portHdr)
	// The kubelet resets a stream with a missing or invalid port or type
	// instead of replying; such streams are relayed for it to refuse.
	valid := portOK && (kind == kindError || kind == kindData)
	reqID := h.Get(hdrRequestID)
	if reqID == "" && valid {
		// The kubelet would derive the id from its own stream id; derive it
		// from the client's, as it would have directly, and say so
		// explicitly since the kubelet-side ids differ.
		id := int(cid)
		if kind == kindData {
			id -= 2
		}
		reqID = strconv.Itoa(id)
		h = h.Clone()
		h.Set(hdrRequestID, reqID)
	}

	st := &stream{cid: cid, kind: kind, finC: f.CFHeader.Flags&spdy.ControlFlagFin != 0}
	var p *pair
	switch {
	case !valid:
		p = r.newPair(reqID, port, true)
		p.add(st)
	default:
		p = r.pairs[reqID]
		if _, ok := r.stopHalf[reqID]; ok && p == nil {
			// The second half of a pair a Stop ended, message and record
			// included (stop.go).
			delete(r.stopHalf, reqID)
			o.rst(r.client, cid, rstCancel)
			return
		}
		if p == nil {
			p = r.newPair(reqID, port, false)
		}
		if (kind == kindError && p.errS != nil) || (kind == kindData && p.dataS != nil) {
			// A duplicate: the kubelet writes its complaint on the pair's
			// error stream and leaves this stream replied but unpaired.
			p.dup = true
		} else {
			if kind == kindData {
				p.rec.Port = port // the kubelet dials the data stream's port
			}
			p.add(st)
		}
	}

	stopping := r.stopMsg != "" // stop.go
	limit := !stopping && (len(r.byClient) >= r.o.MaxStreams || r.kubelet.nextKID > maxStreamID)
	var d Decision
	if !stopping && !limit && valid && !p.denied && r.o.Decide != nil {
		d = r.o.Decide(PairInfo{RequestID: reqID, Port: port, StreamType: kind})
	}
	r.byClient[cid] = st
	switch {
	case stopping:
		r.deny(p, st, OutcomeSessionClosed, r.stopMsg, rstCancel, o)
		return
	case limit:
		r.deny(p, st, OutcomeGatewayLimit, "", rstRefusedStream, o)
		return
	case p.denied:
		r.deny(p, st, p.forced, p.denyMsg, rstCancel, o)
		return
	case d.Deny:
		r.deny(p, st, OutcomeRefused, d.Message, rstCancel, o)
		return
	}

	if r.kubelet.lost || r.dialing {
		// No early reply: the client waits for the new connection's.
		r.wait(st, f, h)
		return
	}
	k := r.kubelet
	k.opened(st)
	if r.o.EarlyReply && valid {
		// Exact because the kubelet's answer is a function of the headers
		// checked above; only its silence is left to time.
		st.replied, st.early = true, true
		o.reply(r.client, cid, 0, http.Header{})
		st.timer = time.AfterFunc(r.o.CreationTimeout, func() { r.replyTimeout(st) })
	}
	*o = append(*o, out{to: k, syn: f, id: st.kid, h: h})
}

// deny refuses st (and its pair) for the client. With a message, the
// client gets what a failed kubelet forward gives it: both streams replied,
// then the message on the error stream and both streams reset. Without, the
// stream is reset at once.
func (r *relay) deny(p *pair, st *stream, why Outcome, msg string, status uint32, o *outbox) {
	if st.p != p {
		// A duplicate stream belongs to no pair: refuse it alone.
		o.rst(r.client, st.cid, status)
		r.remove(st)
		return
	}
	p.denied, p.forced, p.denyMsg = true, why, msg
	// A stream of the pair that already reached the kubelet is withdrawn,
	// except while a Stop closes the session: the kubelet connection closes
	// within stopBound anyway, and an RST racing the kubelet's own close of
	// that stream trips a data race inside spdystream (handleResetFrame
	// writes Stream.replied without its lock), seen under -race in the test
	// kubelet.
	for _, s := range []*stream{p.errS, p.dataS} {
		if s != nil && s.kid != 0 {
			if !s.k.lost && r.stopMsg == "" {
				o.rst(s.k, s.kid, rstCancel)
			}
			delete(s.k.streams, s.kid)
			s.kid = 0
			if s.timer != nil {
				s.timer.Stop()
				s.timer = nil
			}
		}
	}
	if msg == "" {
		for _, s := range []*stream{p.errS, p.dataS} {
			if s != nil {
				o.rst(r.client, s.cid, status)
				r.remove(s)
			}
		}
		return
	}
	if !st.replied {
		st.replied = true
		o.reply(r.client, st.cid, 0, http.Header{})
	}
	if p.errS != nil && p.dataS != nil {
		r.failPair(p, o)
		return
	}
	if p.timer == nil {
		p.timer = time.AfterFunc(r.o.CreationTimeout, func() { r.pairTimeout(p) })
	}
}

// failPair writes p's message on its error stream and resets both streams,
// in the kubelet's order (cri-streaming portForward on a failed forward).
func (r *relay) failPair(p *pair, o *outbox) {
	if p.errS != nil && !p.errS.finK {
		o.raw(r.client, appendData(nil, p.errS.cid, 0, []byte(p.denyMsg)))
	}
	for _, s := range []*stream{p.dataS, p.errS} {
		if s != nil {
			o.rst(r.client, s.cid, rstCancel)
			r.remove(s)
		}
	}
}

// pairTimeout ends a gateway-owned pair whose second stream never came.
func (r *relay) pairTimeout(p *pair) {
	var o outbox
	r.mu.Lock()
	if _, ok := r.live[p]; !ok || r.closing {
		r.mu.Unlock()
		return
	}
	if p.open == 0 {
		r.endPair(p, "") // its streams were reset already (lostPair)
	} else {
		r.failPair(p, &o)
	}
	r.mu.Unlock()
	_ = r.send(o)
	r.emit()
}

// replyTimeout resets an early-replied stream's pair on both sides when
// the kubelet never replied: the client would otherwise wait forever on a
// stream it believes open.
func (r *relay) replyTimeout(st *stream) {
	var o outbox
	r.mu.Lock()
	if st.kReplied || r.byClient[st.cid] != st || r.closing {
		r.mu.Unlock()
		return
	}
	p := st.p
	streams := []*stream{st}
	if p != nil {
		p.forced = OutcomeCreationTimeout
		streams = []*stream{p.errS, p.dataS}
	}
	for _, s := range streams {
		if s == nil || r.byClient[s.cid] != s {
			continue
		}
		if s.kid != 0 {
			o.rst(s.k, s.kid, rstCancel)
			r.answered(s.k, s.kid) // given up on: a hung kubelet never answers
		}
		o.rst(r.client, s.cid, rstCancel)
		r.remove(s)
	}
	r.mu.Unlock()
	_ = r.send(o)
	r.emit()
}
