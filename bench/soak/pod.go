package main

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
)

// echoPod is the soak pod's echo port. A connection starts with an 8-byte
// header, two big-endian uint32: n, the bytes the client sends, and k, how
// many of them the pod echoes. The pod reads all n bytes, echoing the first
// min(k, n) as they arrive, then closes the connection: with k < n it
// closes before the client got its echo (faultPodClose); reading every byte
// first keeps the close a clean FIN instead of a reset of unread data.
type echoPod struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex // protects conns
	conns map[net.Conn]struct{}
}

const echoHeaderLen = 8

func echoHeader(n, k int) []byte {
	var h [echoHeaderLen]byte
	binary.BigEndian.PutUint32(h[0:], uint32(n))
	binary.BigEndian.PutUint32(h[4:], uint32(k))
	return h[:]
}

func startEchoPod() (*echoPod, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &echoPod{ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns[c] = struct{}{}
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				serveEcho(c)
				p.mu.Lock()
				delete(p.conns, c)
				p.mu.Unlock()
			}()
		}
	}()
	return p, nil
}

func (p *echoPod) Addr() string { return p.ln.Addr().String() }

// Close stops accepting, closes the connections being served and waits
// for their goroutines.
func (p *echoPod) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func serveEcho(c net.Conn) {
	defer c.Close()
	var h [echoHeaderLen]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return
	}
	n := int64(binary.BigEndian.Uint32(h[0:]))
	k := min(int64(binary.BigEndian.Uint32(h[4:])), n)
	buf := make([]byte, 32<<10)
	// Plain writers and readers: io.CopyN(c, c, k) would splice a socket
	// onto itself.
	if _, err := io.CopyBuffer(struct{ io.Writer }{c}, io.LimitReader(c, k), buf); err != nil {
		return
	}
	_, _ = io.CopyBuffer(io.Discard, struct{ io.Reader }{io.LimitReader(c, n-k)}, buf)
}
