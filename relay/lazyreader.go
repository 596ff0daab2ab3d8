package relay

import (
	"bufio"
	"io"
	"sync"
)

// FrameBufSize holds two maximal io.Copy-sized SPDY data frames (32 KiB
// each, as spdystream writes them), so a reader drains a TLS record's worth
// of frames in one write.
const FrameBufSize = 64<<10 + 64

// smallBufSize is what an idle reader holds: enough for a frame header and
// the control frames of an idle session (pings, a SYN_STREAM's headers).
const smallBufSize = 512

var bigBufs = sync.Pool{New: func() any { b := make([]byte, FrameBufSize); return &b }}

// FrameReader is a bufio.Reader (Peek, Discard, Buffered, Read) whose large
// buffer is held only while bytes flow. A blocked Read holds the buffer it
// reads into, so a read into an empty buffer (the peer may be idle) goes to
// a small buffer; a pooled FrameBufSize buffer is taken when a frame needs
// more than the bytes at hand (the peer is writing it now) and given back
// when the buffer is empty again. The reads of a busy connection are the
// same as bufio's, plus one small read each time the buffer runs empty; no
// allocation after NewFrameReader.
//
// Hand-written because bufio.Reader cannot swap its buffer while keeping
// what is buffered (Reset drops it).
type FrameReader struct {
	rd   io.Reader
	buf  []byte // small[:] or *big
	big  *[]byte
	r, w int
	err  error

	small [smallBufSize]byte
}

// NewFrameReader reads rd. Release gives its buffer back.
func NewFrameReader(rd io.Reader) *FrameReader {
	b := &FrameReader{rd: rd}
	b.buf = b.small[:]
	return b
}

// Release returns the large buffer, if held, to the pool; b must not be
// used afterwards.
func (b *FrameReader) Release() {
	b.buf, b.r, b.w = nil, 0, 0
	if b.big != nil {
		bigBufs.Put(b.big)
		b.big = nil
	}
	b.rd = nil
}

// Buffered is the number of bytes that can be read without reading rd.
func (b *FrameReader) Buffered() int { return b.w - b.r }

// fill reads once from rd, into a buffer that can hold need bytes.
func (b *FrameReader) fill(need int) {
	if b.r == b.w {
		b.r, b.w = 0, 0
		if b.big != nil && need <= smallBufSize {
			bigBufs.Put(b.big)
			b.big = nil
			b.buf = b.small[:]
		}
	}
	if need > len(b.buf) && b.big == nil {
		b.big = bigBufs.Get().(*[]byte)
		b.w = copy(*b.big, b.buf[b.r:b.w])
		b.r = 0
		b.buf = *b.big
	}
	// As bufio: slide the unread bytes to the front, then read once.
	if b.r > 0 {
		copy(b.buf, b.buf[b.r:b.w])
		b.w -= b.r
		b.r = 0
	}
	for range 100 {
		n, err := b.rd.Read(b.buf[b.w:])
		if n < 0 || n > len(b.buf)-b.w {
			panic("relay: reader returned an invalid count")
		}
		b.w += n
		if err != nil {
			b.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	b.err = io.ErrNoProgress
}

func (b *FrameReader) readErr() error {
	err := b.err
	b.err = nil
	return err
}

// Peek returns the next n bytes without consuming them, as bufio's Peek;
// n larger than FrameBufSize gives bufio.ErrBufferFull.
func (b *FrameReader) Peek(n int) ([]byte, error) {
	if n > FrameBufSize {
		return b.buf[b.r:b.w], bufio.ErrBufferFull
	}
	for b.w-b.r < n && b.err == nil {
		b.fill(n)
	}
	if avail := b.w - b.r; avail < n {
		err := b.readErr()
		if err == nil {
			err = bufio.ErrBufferFull
		}
		return b.buf[b.r:b.w], err
	}
	return b.buf[b.r : b.r+n], nil
}

// Discard skips the next n bytes, reading rd for those not buffered.
func (b *FrameReader) Discard(n int) (int, error) {
	done := 0
	for {
		skip := min(n-done, b.w-b.r)
		b.r += skip
		done += skip
		if done == n {
			return done, nil
		}
		if b.err != nil {
			return done, b.readErr()
		}
		b.fill(1)
	}
}

// Read reads buffered bytes, or, with none buffered, reads rd directly
// into p (so p, not the reader's buffer, waits for the peer).
func (b *FrameReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		if b.Buffered() > 0 {
			return 0, nil
		}
		return 0, b.readErr()
	}
	if b.r == b.w {
		if b.err != nil {
			return 0, b.readErr()
		}
		b.r, b.w = 0, 0
		if b.big != nil {
			bigBufs.Put(b.big)
			b.big = nil
			b.buf = b.small[:]
		}
		return b.rd.Read(p)
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	return n, nil
}
