package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
)

// bufSize is the read buffer of a side while bytes flow (lazyreader.go).
const bufSize = FrameBufSize

var errClosed = net.ErrClosed

// writeError marks a failed write: the connection that ended is the one
// written to, not the one read from.
type writeError struct {
	to  *side
	err error
}

func (e *writeError) Error() string { return fmt.Sprintf("write to %s: %v", e.to.name, e.err) }
func (e *writeError) Unwrap() error { return e.err }

// readLoop relays frames read from src to dst until src ends or a write
// fails. DATA frames are passed on from the read buffer, every complete one
// already buffered in a single write, with the stream id rewritten in
// place; control frames go through the relay's stream logic.
//
// The client's frames go to the kubelet connection of their stream (dst
// nil): a batch ends where that connection changes.
func (r *relay) readLoop(src, to *side, fromClient bool) error {
	br := NewFrameReader(src.c.R)
	defer br.Release()
	for {
		h, err := br.Peek(headerLen)
		if err != nil {
			if len(h) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		n := headerLen + payloadLen(h)
		if isControl(h) {
			if n-headerLen > maxControlPayload {
				return protoErr(fmt.Errorf("control frame of %d bytes exceeds %d", n-headerLen, maxControlPayload))
			}
			frame, err := br.Peek(n)
			if err != nil {
				return unexpected(err)
			}
			err = r.control(src, frame, fromClient)
			_, _ = br.Discard(n)
			if err != nil {
				return err
			}
			continue
		}
		dst := to
		if n > bufSize {
			// Larger than the buffer (no port-forward peer writes these):
			// pass the header, then stream the payload through.
			if err := r.largeData(br, src, dst, n, fromClient); err != nil {
				return err
			}
			continue
		}
		if _, err := br.Peek(n); err != nil {
			return unexpected(err)
		}
		avail, _ := br.Peek(br.Buffered())
		end, skip := 0, 0
		for end+headerLen <= len(avail) && !isControl(avail[end:]) {
			m := headerLen + payloadLen(avail[end:])
			if end+m > len(avail) {
				break
			}
			v := r.data(src, avail[end:end+m], avail[end+headerLen:end+m], fromClient, &dst)
			if v == dataDrop {
				skip = m
				break
			}
			if v == dataNextBatch {
				break
			}
			end += m
		}
		if end > 0 {
			if err := dst.write(avail[:end]); err != nil {
				if err := r.writeFailed(dst, err); err != nil {
					return err
				}
			}
		}
		_, _ = br.Discard(end + skip)
	}
}

// largeData relays one DATA frame bigger than the read buffer.
func (r *relay) largeData(br *FrameReader, src, dst *side, n int, fromClient bool) error {
	var h [headerLen]byte
	p, _ := br.Peek(headerLen)
	copy(h[:], p)
	_, _ = br.Discard(headerLen)
	if r.data(src, h[:], nil, fromClient, &dst) != dataRelay {
		_, err := br.Discard(n - headerLen)
		return unexpected(err)
	}
	dst.wmu.Lock()
	if _, err := dst.c.W.Write(h[:]); err != nil {
		dst.wmu.Unlock()
		if err := r.writeFailed(dst, err); err != nil {
			return err
		}
		_, err := br.Discard(n - headerLen)
		return unexpected(err)
	}
	// Copied by hand rather than with io.CopyN so that a failed write (to
	// a kubelet connection the session can replace) is told from a failed
	// read, and the rest of the frame is still consumed.
	var werr error
	for left := n - headerLen; left > 0; {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				dst.wmu.Unlock()
				return unexpected(err)
			}
		}
		chunk, _ := br.Peek(min(left, br.Buffered()))
		if werr == nil {
			_, werr = dst.c.W.Write(chunk)
		}
		_, _ = br.Discard(len(chunk))
		left -= len(chunk)
	}
	dst.wmu.Unlock()
	if werr != nil {
		return r.writeFailed(dst, werr)
	}
	return nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// What data says of a DATA frame.
const (
	dataRelay     = iota
	dataDrop      // unknown or gateway-owned stream
	dataNextBatch // another kubelet connection than the batch's: not consumed
)

// data does the bookkeeping for one DATA frame (h is its header, payload
// whatever of its payload is at hand) read from src and rewrites its
// stream id for the other side. It drops the frame when its stream is
// unknown (gone, as spdystream ignores such frames) or owned by the
// gateway. A client frame goes to its stream's kubelet connection: *dst,
// set by the batch's first frame.
func (r *relay) data(src *side, h, payload []byte, fromClient bool, dst **side) int {
	id := dataStreamID(h)
	r.mu.Lock()
	var st *stream
	if fromClient {
		st = r.byClient[id]
	} else {
		st = src.streams[id]
	}
	if st == nil || st.kid == 0 {
		r.mu.Unlock()
		return dataDrop
	}
	if fromClient {
		switch *dst {
		case nil:
			*dst = st.k
		case st.k:
		default:
			r.mu.Unlock()
			return dataNextBatch
		}
	}
	to := st.cid
	if fromClient {
		to = st.kid
	}
	if to != id {
		setDataStreamID(h, to)
	}
	if p := st.p; p != nil {
		n := int64(payloadLen(h))
		if st == p.dataS && r.o.Payload != nil {
			r.o.Payload.Add(n)
		}
		switch {
		case st == p.dataS && fromClient:
			p.rec.Up += n
		case st == p.dataS:
			p.rec.Down += n
		case st == p.errS && !fromClient && len(p.msg) < MaxMessage:
			p.msg = append(p.msg, payload[:min(len(payload), MaxMessage-len(p.msg))]...)
		}
		if st == p.errS && !fromClient && n > 0 && r.o.ResetKubeletErrors && frameFlags(h)&flagFin == 0 {
			// Kept for the Record only; the kubelet's resets follow.
			r.mu.Unlock()
			return dataDrop
		}
	}
	ended := false
	if frameFlags(h)&flagFin != 0 {
		ended = r.fin(st, fromClient)
	}
	r.mu.Unlock()
	if ended {
		r.emit()
	}
	return dataRelay
}
