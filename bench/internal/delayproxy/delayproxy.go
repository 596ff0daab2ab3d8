// Package delayproxy is a TCP proxy for Linux that delays every byte by a
// fixed time in each direction, so that a loopback benchmark sees a network round trip
// (twice the one-way delay) between two of its parties.
//
// Each direction is a reader that timestamps what it reads and a writer that
// sends each chunk once its time has come, in the order read: the delay is
// added, never reordered, and a full queue stops the reader, so TCP's own
// flow control still applies. A read EOF is passed on, delayed like data, as
// a half-close.
package delayproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// queueLen is how many chunks a direction may hold in flight.
const queueLen = 1024

// Proxy forwards connections accepted on its listener to a target address.
type Proxy struct {
	ln     net.Listener
	target string
	delay  time.Duration // one way

	mu    sync.Mutex // protects the fields below
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Start listens on 127.0.0.1 (any free port) and forwards each connection to
// target, delaying each direction by oneWay.
func Start(target string, oneWay time.Duration) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, delay: oneWay, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting, closes every proxied connection and waits for
// the proxy's goroutines.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil // track refuses connections accepted from now on
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.proxy(c) }()
	}
}

// track registers c for Close; false if the proxy is closing.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	for _, c := range cs {
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

func (p *Proxy) proxy(client net.Conn) {
	defer client.Close()
	if !p.track(client) {
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		p.untrack(client)
		return
	}
	defer server.Close()
	if !p.track(server) {
		p.untrack(client)
		return
	}
	defer p.untrack(client, server)
	// Either direction failing ends both: closing the connections unblocks
	// the other direction's reader and writer.
	var once sync.Once
	fail := func() { once.Do(func() { _ = client.Close(); _ = server.Close() }) }
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client, fail) }()
	go func() { defer wg.Done(); p.pipe(client, server, fail) }()
	wg.Wait()
}

type chunk struct {
	b   []byte // nil: the source reached EOF
	due time.Time
}

// pipe copies src to dst, each chunk delayed by p.delay after it was read.
func (p *Proxy) pipe(dst, src net.Conn, fail func()) {
	q := make(chan chunk, queueLen)
	go func() {
		defer close(q)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{append([]byte(nil), buf[:n]...), time.Now().Add(p.delay)}
			}
			if errors.Is(err, io.EOF) {
				q <- chunk{nil, time.Now().Add(p.delay)}
				return
			}
			if err != nil {
				fail()
				return
			}
		}
	}()
	for c := range q {
		sleepUntil(c.due)
		if c.b == nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			continue
		}
		if _, err := dst.Write(c.b); err != nil {
			fail()
			for range q { // let the reader finish
			}
			return
		}
	}
}

// sleepUntil waits until t. Not time.Sleep: when the runtime has nothing
// else to do it waits in its poller, which rounds up to whole
// milliseconds, so a 0.5 ms sleep takes about 1.1 ms. nanosleep(2) uses a
// high-resolution timer (about 0.57 ms for 0.5 ms here) and blocks only
// this goroutine's thread.
func sleepUntil(t time.Time) {
	for {
		w := time.Until(t)
		if w <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(int64(w))
		if syscall.Nanosleep(&ts, nil) == nil {
			return
		}
	}
}
