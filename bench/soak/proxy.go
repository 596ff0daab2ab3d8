package main

import (
	"io"
	"net"
	"sync"
)

// cutProxy is a loopback TCP proxy between the gateway children and the
// test kubelet (the node's kubelet port points at it) whose connections
// can all be severed at once: a network cut between gateway and kubelet
// (faultBackendCut). It is test/e2e's faultProxy without hang and reopen;
// a bench command cannot import a _test file.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startCutProxy(target string) (*cutProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *cutProxy) port() int32 { return int32(p.ln.Addr().(*net.TCPAddr).Port) }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(c)
		p.wg.Add(1)
		go p.splice(c)
	}
}

func (p *cutProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
}

func (p *cutProxy) splice(c net.Conn) {
	defer p.wg.Done()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(c)
		return
	}
	p.track(up)
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

func (p *cutProxy) drop(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// sever closes every connection through the proxy, both ends, and says
// how many it closed.
func (p *cutProxy) sever() int {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
	return len(conns)
}

// Close stops accepting, severs everything and waits for the copiers.
func (p *cutProxy) Close() {
	_ = p.ln.Close()
	p.sever()
	p.wg.Wait()
}
