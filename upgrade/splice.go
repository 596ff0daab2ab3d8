package upgrade

import (
	"errors"
	"io"
	"net"
	"sync"
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
// ends, then closes both, as the API server's upgrade-aware proxy does: for
// SPDY and WebSocket the end of either connection ends the session. It
// returns the first error that is not the ordinary end of a connection.
func splice(client io.ReadWriter, clientConn io.Closer, backend net.Conn, addUp, addDown func(int)) error {
	errc := make(chan error, 2)
	cp := func(dst io.Writer, src io.Reader) {
		bp := bufPool.Get().(*[]byte)
		_, err := io.CopyBuffer(dst, onlyReader{src}, *bp)
		bufPool.Put(bp)
		errc <- err
	}
	go cp(countingWriter{backend, addUp}, client)
	go cp(countingWriter{client, addDown}, backend)
	err := <-errc
	_ = clientConn.Close()
	_ = backend.Close()
	err2 := <-errc
	if isClosed(err) {
		err = err2
	}
	if isClosed(err) {
		return nil
	}
	return err
}

// onlyReader hides WriterTo so io.CopyBuffer uses the pooled buffer.
type onlyReader struct{ io.Reader }

func isClosed(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
