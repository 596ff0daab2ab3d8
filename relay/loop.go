package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
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

// IdleAfter is how long a side with Conn.Idle stays quiet before its
// reader hands over to a waiting goroutine (read). A busy connection that
// pauses this long pays one goroutine start.
const IdleAfter = 250 * time.Millisecond

// errIdle is readLoop's return when its connection has been quiet.
var errIdle = errors.New("relay: connection idle")

// armIdle keeps a read deadline about IdleAfter ahead of the side's reads,
// renewed at most every IdleAfter/2: a clock read per read into an empty
// buffer, a timer update per renewal.
func (s *side) armIdle() {
	now := time.Now()
	if now.Sub(s.idleArmed) < IdleAfter/2 {
		return
	}
	s.idleArmed = now
	_ = s.c.Idle.SetReadDeadline(now.Add(IdleAfter))
}

// disarmIdle clears the side's read deadline.
func (s *side) disarmIdle() {
	if s.c.Idle != nil && !s.idleArmed.IsZero() {
		s.idleArmed = time.Time{}
		_ = s.c.Idle.SetReadDeadline(time.Time{})
	}
}

// idleTimeout reports whether err is the armed deadline passing.
func (s *side) idleTimeout(err error) bool {
	return err != nil && s.c.Idle != nil && errors.Is(err, os.ErrDeadlineExceeded)
}

// read runs readLoop on src; if src goes quiet it hands the reading over
// to a fresh goroutine that waits for src's next bytes and then calls
// src.readOn, and reports false: the calling goroutine must end without doing
// anything more. Otherwise it reports true and readLoop's error.
//
// Why a fresh goroutine: one blocked deep in a read keeps the 8 KiB stack
// the read grew (the runtime halves a stack only at a GC, and only when
// under a quarter of it is in use), and client-go's pings every 5 s make
// each reader grow it again. A fresh goroutine waiting in WaitReadable
// starts at the runtime's small starting size and needs no GC to get
// there; the reading one exits, and its stack goes back to the pool.
func (r *relay) read(src, to *side, fromClient bool) (ended bool, err error) {
	err = r.readLoop(src, to, fromClient)
	if err == errIdle {
		if src.waitThenRead == nil {
			src.waitThenRead = func() {
				src.disarmIdle()              // WaitReadable would return at once past a deadline
				_ = src.c.Idle.WaitReadable() // a close wakes it too; the next read says so
				src.readOn()
			}
		}
		go src.waitThenRead()
		return false, nil
	}
	if src.br != nil {
		src.br.Release()
		src.br = nil
	}
	return true, err
}

// readLoop relays frames read from src to dst until src ends or a write
// fails. DATA frames are passed on from the read buffer, every complete one
// already buffered in a single write, with the stream id rewritten in
// place; control frames go through the relay's stream logic.
//
// The client's frames go to the kubelet connection of their stream (dst
// nil): a batch ends where that connection changes.
func (r *relay) readLoop(src, to *side, fromClient bool) error {
	if src.br == nil {
		src.br = NewFrameReader(src.c.R)
	}
	br := src.br
	for {
		if src.c.Idle != nil && br.Buffered() == 0 {
			src.armIdle()
		}
		// A read that times out has consumed nothing of a frame (Peek):
		// the next readLoop starts again from the buffered bytes.
		h, err := br.Peek(headerLen)
		if src.idleTimeout(err) {
			return errIdle
		}
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
			if src.idleTimeout(err) {
				return errIdle
			}
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
			if src.idleTimeout(err) {
				return errIdle
			}
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
	src.disarmIdle() // this frame is consumed as it is read: no restart
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
