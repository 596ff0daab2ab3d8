package relay

import (
	"encoding/binary"
	"fmt"
	"net/http"

	"github.com/moby/spdystream/spdy"
)

// out is a frame to write once the relay's lock is released. Header
// frames are encoded under the target side's write lock, so the order of
// their zlib blocks is the order on the wire.
type out struct {
	to    *side
	raw   []byte
	reply bool // SYN_REPLY for id with flags and h
	syn   *spdy.SynStreamFrame
	id    uint32
	flags byte
	h     http.Header
}

// outbox collects the writes a frame causes, in order.
type outbox []out

func (o *outbox) raw(to *side, b []byte) { *o = append(*o, out{to: to, raw: b}) }

func (o *outbox) rst(to *side, id, status uint32) { o.raw(to, appendRst(nil, id, status)) }

func (o *outbox) reply(to *side, id uint32, flags byte, h http.Header) {
	*o = append(*o, out{to: to, reply: true, id: id, flags: flags, h: h})
}

func (s *side) send(w out) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.sendLocked(w)
}

// sendLocked is send with s.wmu held.
func (s *side) sendLocked(w out) error {
	b := w.raw
	switch {
	case w.syn != nil:
		f := w.syn
		b = s.enc.appendSynStream(nil, w.id, uint32(f.AssociatedToStreamId), byte(f.CFHeader.Flags), f.Priority, f.Slot, w.h)
	case w.reply:
		b = s.enc.appendSynReply(nil, w.id, w.flags, w.h)
	}
	_, err := s.c.W.Write(b)
	return err
}

// control handles one whole control frame read from src.
func (r *relay) control(src *side, frame []byte, fromClient bool) error {
	switch controlType(frame) {
	case typeSynStream, typeSynReply, typeRstStream, typeSettings, typePing, typeGoAway, typeHeaders, typeWindowUpdate:
	default:
		// spdystream fails its connection on an unknown control frame.
		return protoErr(fmt.Errorf("unknown control frame type %d", controlType(frame)))
	}
	// Room for what a frame causes, on the stack: an idle session's pings
	// then allocate nothing (each one did, ≈ 100 bytes).
	var room [2]out
	o := outbox(room[:0])
	if id, ok := plainPing(frame); ok {
		// The commonest frame of an idle session, read without the Framer
		// (which allocates a frame and reads its id by reflection).
		r.ping(src, id, fromClient, frame, &o)
		err := r.send(o)
		r.emit()
		return err
	}
	f, err := src.dec.decode(frame)
	if err != nil {
		return protoErr(err)
	}
	switch f := f.(type) {
	case *spdy.SynStreamFrame:
		if fromClient {
			r.clientSyn(f, &o)
		} else {
			// The gateway accepts no streams from a kubelet, which opens none.
			o.rst(src, uint32(f.StreamId), rstRefusedStream)
		}
	case *spdy.SynReplyFrame:
		if !fromClient {
			r.kubeletReply(src, f, &o)
		} // the gateway opens no streams toward the client: nothing to reply to
	case *spdy.RstStreamFrame:
		r.rst(src, uint32(f.StreamId), uint32(f.Status), fromClient, &o)
	case *spdy.HeadersFrame:
		// Decoded (it advanced the zlib context) and dropped: spdystream
		// parks such frames where port-forward never reads them. Its FIN
		// still counts.
		if f.CFHeader.Flags&spdy.ControlFlagFin != 0 {
			r.remoteFin(src, uint32(f.StreamId), fromClient, &o)
		}
	case *spdy.GoAwayFrame:
		return errGoAway
	}
	// A PING the decoder accepts (flags 0, a non-zero 4-byte id) is one
	// plainPing took above; the decoder only names the others' faults.
	// SETTINGS and WINDOW_UPDATE are per connection and spdystream ignores them.
	err = r.send(o)
	r.emit()
	return err
}

// ping answers a peer's ping (frame, which send writes before the read
// buffer moves on) on its own side, never forwarding it. spdystream echoes
// a ping whose id parity differs from its own; the gateway is the server
// (even ids) toward the client and the client (odd ids) toward the kubelet.
func (r *relay) ping(src *side, id uint32, fromClient bool, frame []byte, o *outbox) {
	if !fromClient {
		if id&1 == 0 {
			o.raw(src, frame)
		} else {
			r.pingEchoed(src) // odd: the echo of the gateway's own ping
		}
		return
	}
	if id&1 == 0 {
		return // an echo of a ping the gateway never sends the client
	}
	o.raw(r.client, frame)
	// Directly, the client's pings would also reset the kubelet's idle
	// timer; keep doing that, paced.
	r.mu.Lock()
	now := r.now()
	if k := r.kubelet; !k.lost && now.Sub(r.lastMirror) >= pingMirrorInterval {
		r.lastMirror = now
		o.raw(k, appendPing(nil, r.nextPingID(k)))
		r.pingSentLocked()
	}
	r.mu.Unlock()
}

// remoteFin relays a half-close carried by a frame that is not relayed
// itself (HEADERS, or a swallowed SYN_REPLY), as an empty DATA+FIN.
func (r *relay) remoteFin(src *side, id uint32, fromClient bool, o *outbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.lookup(src, id, fromClient)
	if st == nil || st.kid == 0 {
		return
	}
	r.finOut(st, fromClient, o)
}

// finOut queues an empty DATA+FIN for st toward the other side and records it.
func (r *relay) finOut(st *stream, fromClient bool, o *outbox) {
	if fromClient {
		o.raw(st.k, appendData(nil, st.kid, flagFin, nil))
	} else {
		o.raw(r.client, appendData(nil, st.cid, flagFin, nil))
	}
	r.fin(st, fromClient)
}

func (r *relay) lookup(src *side, id uint32, fromClient bool) *stream {
	if fromClient {
		return r.byClient[id]
	}
	return src.streams[id]
}

// kubeletReply relays the kubelet's SYN_REPLY, or swallows it when the
// gateway already replied.
func (r *relay) kubeletReply(src *side, f *spdy.SynReplyFrame, o *outbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answered(src, uint32(f.StreamId))
	st := src.streams[uint32(f.StreamId)]
	if st == nil || st.kReplied {
		return // gone, or a second reply (spdystream ignores it)
	}
	st.kReplied = true
	fin := f.CFHeader.Flags&spdy.ControlFlagFin != 0
	if st.early {
		if st.timer != nil {
			st.timer.Stop()
			st.timer = nil
		}
		if fin {
			r.finOut(st, false, o)
		}
		return
	}
	st.replied = true
	o.reply(r.client, st.cid, byte(f.CFHeader.Flags), f.Headers)
	if fin {
		r.fin(st, false)
	}
}

// rst relays a RST_STREAM with its status unchanged and forgets the stream.
func (r *relay) rst(src *side, id, status uint32, fromClient bool, o *outbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !fromClient {
		r.answered(src, id) // a refusal answers a SYN_STREAM too
	}
	st := r.lookup(src, id, fromClient)
	if st == nil {
		return
	}
	if fromClient {
		// Not while a Stop closes the session: the kubelet connection
		// closes anyway. The stop's own resets tripped spdystream's
		// handleResetFrame on a stream whose reply had failed (answers.go
		// has why); teardown now waits for the kubelet's answers, which
		// covers that too, but a stop still passes no reset on.
		if st.kid != 0 && r.stopMsg == "" {
			o.rst(st.k, st.kid, status)
		}
		if st.p != nil && !r.ending {
			// Once the session is ending for another reason, a client's
			// reset is its reaction to that (client-go resets its data
			// stream when the connection closes under it), not the cause.
			st.p.event(OutcomeClientReset)
		}
	} else {
		o.rst(r.client, st.cid, status)
		if st.p != nil {
			if st.kReplied {
				st.p.event(OutcomeKubeletReset)
			} else {
				st.p.event(OutcomeKubeletRefused)
			}
		}
	}
	r.remove(st)
}

// plainPing returns the id of a well-formed PING frame (flags 0, a 4-byte
// non-zero id); anything else goes to the decoder, which names the fault
// as spdystream does.
func plainPing(frame []byte) (uint32, bool) {
	if controlType(frame) != typePing || frameFlags(frame) != 0 || payloadLen(frame) != 4 || len(frame) != headerLen+4 {
		return 0, false
	}
	id := binary.BigEndian.Uint32(frame[headerLen:])
	return id, id != 0
}
