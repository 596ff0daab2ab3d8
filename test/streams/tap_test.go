package streams

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// wire records one upgraded connection's bytes after the HTTP heads, in
// both directions, as the client sees them. Frames are decoded only after
// the scenario (transcript.go), so recording never slows the peers down
// and needs no goroutine of its own.
type wire struct {
	ws bool // both directions carry WebSocket frames around the SPDY bytes

	mu          sync.Mutex
	out, in     bytes.Buffer // client→server, server→client
	remoteEnded bool         // reads ended before the client closed
	localClosed bool
	inCut       int // len(in) when the client started closing; -1 before

	done chan struct{} // tapProxy: closed once both directions are over
}

func newWire(ws bool) *wire { return &wire{ws: ws, inCut: -1, done: make(chan struct{})} }

func (w *wire) recordOut(p []byte) {
	w.mu.Lock()
	w.out.Write(p)
	w.mu.Unlock()
}

func (w *wire) recordIn(p []byte, err error) {
	w.mu.Lock()
	w.in.Write(p)
	if err != nil && !w.localClosed {
		w.remoteEnded = true
	}
	w.mu.Unlock()
}

// closing marks that the client is about to close the connection itself:
// the read error that follows is not the server's doing, and what the
// server sends from now on races with the close, so the transcript stops
// there.
func (w *wire) closing() {
	w.mu.Lock()
	w.localClosed = true
	if w.inCut < 0 {
		w.inCut = w.in.Len()
	}
	w.mu.Unlock()
}

// snapshot copies what was recorded: all the client sent, and what it
// received before it started closing.
func (w *wire) snapshot() (out, in []byte, remoteEnded bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	in = w.in.Bytes()
	if w.inCut >= 0 {
		in = in[:w.inCut]
	}
	return bytes.Clone(w.out.Bytes()), bytes.Clone(in), w.remoteEnded
}

// tapConn is the client's connection with every byte copied into w.
type tapConn struct {
	net.Conn
	r io.Reader // bytes buffered while reading the HTTP response come first
	w *wire
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.w.recordIn(p[:n], err)
	return n, err
}

func (c *tapConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.w.recordOut(p[:n])
	return n, err
}

func (c *tapConn) Close() error {
	c.w.closing()
	return c.Conn.Close()
}

// tapProxy is a TLS-terminating relay in front of a kubelet or gateway, for
// clients whose connection the test cannot wrap (client-go's dialers). It
// serves a loopback certificate from the cluster CA, dials the real target
// with its own client certificate and records the plaintext of every
// upgraded connection. Reads and writes are relayed whole; when either
// direction ends both connections close, as the gateway's opaque splice
// does, so closes propagate in both directions.
type tapProxy struct {
	ln       net.Listener
	upstream string
	upTLS    *tls.Config
	ws       bool

	mu    sync.Mutex
	wires []*wire
	wg    sync.WaitGroup
}

func startTapProxy(t *testing.T, e *env, upstream string, upTLS *tls.Config, ws bool) *tapProxy {
	t.Helper()
	kp, err := e.cluster.CA.Issue(pki.Loopback("streams-tap"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{kp.TLS}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &tapProxy{ln: ln, upstream: upstream, upTLS: upTLS, ws: ws}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *tapProxy) addr() string { return p.ln.Addr().String() }

// closing marks every recorded connection as about to be closed by the
// client (ForwardPorts stopping), so the server's close that follows is not
// recorded as the server ending the session.
func (p *tapProxy) closing() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.wires {
		w.closing()
	}
}

// wire returns the recording of the i-th accepted connection.
func (p *tapProxy) wire(i int) *wire {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i >= len(p.wires) {
		return nil
	}
	return p.wires[i]
}

func (p *tapProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		w := newWire(p.ws)
		p.mu.Lock()
		p.wires = append(p.wires, w)
		p.mu.Unlock()
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.relay(c, w) }()
	}
}

func (p *tapProxy) relay(client net.Conn, w *wire) {
	defer close(w.done)
	defer client.Close()
	up, err := tls.Dial("tcp", p.upstream, p.upTLS)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { // client → upstream: the request head, then recorded bytes
		copyAfterHead(up, client, w.recordOut, nil)
		done <- struct{}{}
	}()
	go func() { // upstream → client: the response head, then recorded bytes
		copyAfterHead(client, up, func(b []byte) { w.recordIn(b, nil) }, func(err error) { w.recordIn(nil, err) })
		done <- struct{}{}
	}()
	<-done
	// Whichever side ended first, close both so the other's reads end too;
	// the upstream read then fails with net.ErrClosed, which is not
	// recorded as the server ending the connection.
	client.Close()
	up.Close()
	<-done
}

// copyAfterHead copies src to dst. Everything after the first blank line
// (the end of the HTTP head) is also passed to rec; end gets the error that
// ended the reads.
func copyAfterHead(dst io.Writer, src io.Reader, rec func([]byte), end func(error)) {
	br := bufio.NewReaderSize(src, 64<<10)
	var head []byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		b, err := br.ReadByte()
		if err != nil {
			if end != nil {
				end(err)
			}
			return
		}
		head = append(head, b)
	}
	if _, err := dst.Write(head); err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			rec(buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if end != nil && !errors.Is(err, net.ErrClosed) {
				end(err)
			}
			return
		}
	}
}
