// Package faultproxy is a loopback TCP proxy that tests and the soak put
// between the gateway and a kubelet (the node's kubelet port points at it)
// to break the path on purpose: sever every connection (a network cut),
// hang (accept and never answer: a kubelet that stopped serving), or close
// the listener and reopen it on the same address (a server restarting).
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Proxy forwards each accepted connection to its target.
type Proxy struct {
	target string

	mu       sync.Mutex
	ln       net.Listener
	addr     string
	hang     bool
	conns    map[net.Conn]struct{}
	accepted int
	wg       sync.WaitGroup
}

// Start listens on a free loopback port and forwards to target.
func Start(target string) (*Proxy, error) {
	p := &Proxy{target: target, addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	if err := p.Reopen(); err != nil {
		return nil, err
	}
	return p, nil
}

// Port is the port the proxy listens on.
func (p *Proxy) Port() int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int32(p.ln.Addr().(*net.TCPAddr).Port)
}

// Reopen listens again on the proxy's address, after CloseListener.
func (p *Proxy) Reopen() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.ln, p.addr = ln, ln.Addr().String()
	p.wg.Add(1)
	go p.accept(ln)
	return nil
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		p.conns[c] = struct{}{}
		hang := p.hang
		p.mu.Unlock()
		if hang {
			continue // held open, never read: closed by Sever
		}
		p.wg.Add(1)
		go p.splice(c)
	}
}

func (p *Proxy) splice(c net.Conn) {
	defer p.wg.Done()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(c)
		return
	}
	p.mu.Lock()
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
	p.drop(c)
	p.drop(up)
}

func (p *Proxy) drop(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Sever closes every connection through the proxy, both ends, and says
// how many it closed.
func (p *Proxy) Sever() int {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
	return len(conns)
}

// SetHang makes the proxy accept new connections and never answer them.
func (p *Proxy) SetHang(h bool) { p.mu.Lock(); p.hang = h; p.mu.Unlock() }

// Accepted counts the connections accepted so far.
func (p *Proxy) Accepted() int { p.mu.Lock(); defer p.mu.Unlock(); return p.accepted }

// CloseListener stops accepting and severs every connection; Reopen
// listens again.
func (p *Proxy) CloseListener() error {
	p.mu.Lock()
	ln := p.ln
	p.mu.Unlock()
	err := ln.Close()
	p.Sever()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() error {
	err := p.CloseListener()
	p.wg.Wait()
	return err
}

// Addr is the address the proxy listens on (kept across Reopen).
func (p *Proxy) Addr() string { p.mu.Lock(); defer p.mu.Unlock(); return p.addr }
