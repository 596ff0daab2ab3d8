package faultproxy

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err
}

func TestProxyFaults(t *testing.T) {
	p, err := Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(int(p.Port()))
	if addr != p.Addr() {
		t.Fatalf("Addr %s, Port gives %s", p.Addr(), addr)
	}
	if err := roundTrip(addr); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	// A held connection is cut by Sever: both ends, so 2.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	// The first round trip's two connections are dropped once its copiers
	// see the close; wait for that, so only the held pair is open.
	deadline := time.Now().Add(10 * time.Second)
	for p.open() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.Sever(); n != 2 {
		t.Fatalf("Sever closed %d connections, want 2", n)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(b); err == nil {
		t.Fatal("a severed connection still reads")
	}

	// Hanging: accepted, never answered.
	p.SetHang(true)
	h, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, _ = h.Write([]byte("ping\n"))
	_ = h.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := h.Read(b); err == nil || !err.(net.Error).Timeout() {
		t.Fatalf("a hanging proxy answered: %v", err)
	}
	p.SetHang(false)

	// Closed, then reopened on the same address.
	if err := p.CloseListener(); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(addr); err == nil {
		t.Fatal("a closed proxy answered")
	}
	if err := p.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(addr); err != nil {
		t.Fatalf("after Reopen: %v", err)
	}
	if n := p.Accepted(); n != 4 {
		t.Fatalf("Accepted = %d, want 4", n)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func (p *Proxy) open() int { p.mu.Lock(); defer p.mu.Unlock(); return len(p.conns) }
