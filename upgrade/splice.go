package upgrade

import (
	"errors"
	"io"
	"net"
	"sync"

	"github.com/pfgateway/pfgateway/netconn"
	"github.com/pfgateway/pfgateway/relay"
)

// bufSize is the copy buffer: twice the largest TLS record payload (16 KiB),
// so one read drains whatever a TLS connection has decrypted.
const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// countingWriter counts what it writes, for per-session byte totals.
type countingWriter struct {
	w   io.Writer
	add func(int)
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if n > 0 {
		c.add(n)
	}
	return n, err
}

// splice copies client→backend and backend→client until either direction
// ends, then closes both. With framed set, both directions carry SPDY and
// are relayed a whole frame (or a batch of whole frames) per write. The
// kubelet→client direction runs on the caller's goroutine, so an idle
// session parks one goroutine stack fewer.
func splice(client io.ReadWriter, clientConn io.Closer, backend net.Conn, backendR io.Reader, framed bool, addUp, addDown func(int)) error {
	cp := func(dst io.Writer, src io.Reader) error {
		if framed {
			return copyFrames(dst, src)
		}
		bp := bufPool.Get().(*[]byte)
		_, err := io.CopyBuffer(dst, onlyReader{src}, *bp)
		bufPool.Put(bp)
		return err
	}
	// The direction that ends first closes both and names the error.
	var once sync.Once
	var first error
	var upFirst bool
	end := func(err error, isUp bool) {
		once.Do(func() {
			first, upFirst = err, isUp
			_ = clientConn.Close()
			_ = backend.Close()
		})
	}
	upc := make(chan error, 1)
	go func() {
		err := cp(countingWriter{netconn.Writer(backend), addUp}, client)
		end(err, true)
		upc <- err
	}()
	down := cp(countingWriter{client, addDown}, backendR)
	end(down, false)
	up := <-upc
	err := first
	if isClosed(err) {
		err = up
		if upFirst {
			err = down
		}
	}
	if isClosed(err) {
		return nil
	}
	return err
}

// frameBufSize holds two maximal io.Copy-sized SPDY data frames; the
// reader holds it only while bytes flow (relay.FrameReader).
const frameBufSize = relay.FrameBufSize

// spdyFrameLen is the length of the SPDY frame whose 8-byte header is h:
// control and data frames both carry a 24-bit length in bytes 5–7.
func spdyFrameLen(h []byte) int { return 8 + (int(h[5])<<16 | int(h[6])<<8 | int(h[7])) }

// copyFrames relays SPDY frames from src to dst. It waits for the rest of a
// frame once its header has arrived (the peer writes a frame's header and
// data back to back) and writes every complete frame already buffered in
// one call, so a 32 KiB data frame that spdystream wrote as three writes
// (stream id, flags and length, data) leaves as one.
func copyFrames(dst io.Writer, src io.Reader) error {
	br := relay.NewFrameReader(src)
	defer br.Release()
	for {
		h, err := br.Peek(8)
		if err != nil {
			if len(h) > 0 {
				_, _ = dst.Write(h)
			}
			return err
		}
		n := spdyFrameLen(h)
		if n > frameBufSize {
			// Larger than the buffer (never for data io.Copy writes): stream it.
			if _, err := io.CopyN(dst, br, int64(n)); err != nil {
				return err
			}
			continue
		}
		if _, err := br.Peek(n); err != nil {
			b, _ := br.Peek(br.Buffered())
			_, _ = dst.Write(b)
			return err
		}
		// Add the frames that are already complete in the buffer.
		avail, _ := br.Peek(br.Buffered())
		for len(avail)-n >= 8 {
			m := spdyFrameLen(avail[n:])
			if n+m > len(avail) {
				break
			}
			n += m
		}
		if _, err := dst.Write(avail[:n]); err != nil {
			return err
		}
		_, _ = br.Discard(n)
	}
}

// onlyReader hides WriterTo so io.CopyBuffer uses the pooled buffer.
type onlyReader struct{ io.Reader }

func isClosed(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
