package delayproxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"
)

func echoServer(t *testing.T) string {
	t.Helper()
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
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func TestProxy(t *testing.T) {
	const oneWay = 20 * time.Millisecond
	p, err := Start(echoServer(t), oneWay)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))

	t.Run("should add the round trip to a ping", func(t *testing.T) {
		start := time.Now()
		if _, err := c.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		if rtt := time.Since(start); rtt < 2*oneWay || rtt > 2*oneWay+time.Second {
			t.Errorf("round trip %s, want about %s", rtt, 2*oneWay)
		}
	})
	t.Run("should keep bytes in order and pass on a half-close", func(t *testing.T) {
		want := make([]byte, 4<<20)
		_, _ = rand.Read(want)
		go func() {
			for b := want; len(b) > 0; b = b[min(len(b), 1000):] { // many small chunks
				if _, err := c.Write(b[:min(len(b), 1000)]); err != nil {
					return
				}
			}
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("echo differs: got %d bytes, want %d", len(got), len(want))
		}
	})
}

func TestCloseEndsConnections(t *testing.T) {
	p, err := Start(echoServer(t), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the client connection is still open after Close")
	}
}
