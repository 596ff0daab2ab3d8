package e2e

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/pfgateway/pfgateway/devcluster"
)

// faultProxy is a loopback TCP proxy that a test can break: sever its
// connections (a network cut), hang (accept and never answer, a kubelet
// that stopped serving), or close its listener and reopen it on the same
// address (a pod's server restarting).
type faultProxy struct {
	t      testing.TB
	target string
	addr   string

	mu       sync.Mutex
	ln       net.Listener
	hang     bool
	conns    map[net.Conn]struct{}
	accepted int
	wg       sync.WaitGroup
}

func startFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	p := &faultProxy{t: t, target: target, addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	p.reopen()
	t.Cleanup(func() { p.closeListener(); p.wg.Wait() })
	return p
}

func (p *faultProxy) port() int32 { return int32(p.ln.Addr().(*net.TCPAddr).Port) }

// reopen listens again on the proxy's address.
func (p *faultProxy) reopen() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen %s: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Add(1)
	go p.accept(ln)
}

func (p *faultProxy) accept(ln net.Listener) {
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
			continue // held open, never read: closed by sever
		}
		p.wg.Add(1)
		go p.splice(c)
	}
}

func (p *faultProxy) splice(c net.Conn) {
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

func (p *faultProxy) drop(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// sever closes every connection through the proxy, both ends.
func (p *faultProxy) sever() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
}

// closeListener stops accepting and severs every connection.
func (p *faultProxy) closeListener() {
	p.mu.Lock()
	ln := p.ln
	p.mu.Unlock()
	if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		p.t.Errorf("proxy close: %v", err)
	}
	p.sever()
}

func (p *faultProxy) setHang(h bool) { p.mu.Lock(); p.hang = h; p.mu.Unlock() }

func (p *faultProxy) acceptedCount() int { p.mu.Lock(); defer p.mu.Unlock(); return p.accepted }

// pointNodeAt makes the dev node publish port as its kubelet port, so the
// gateway resolves its pods to whatever listens there.
func (e *env) pointNodeAt(t testing.TB, port int32) {
	t.Helper()
	gvr := corev1.SchemeGroupVersion.WithResource("nodes")
	obj, err := e.cluster.APIServer.Tracker().Get(gvr, "", devcluster.NodeName)
	if err != nil {
		t.Fatal(err)
	}
	n := obj.(*corev1.Node).DeepCopy()
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = port
	if err := e.cluster.APIServer.Tracker().Update(gvr, n, ""); err != nil {
		t.Fatal(err)
	}
}
