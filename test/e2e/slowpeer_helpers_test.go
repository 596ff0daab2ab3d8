package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/spdystream"

	"github.com/pfgateway/pfgateway/devcluster/hashpod"
)

// slowServer accepts connections and, as a firehose, writes to each until
// it fails, or, as a black hole, holds them; it never reads.
type slowServer struct {
	ln    net.Listener
	sent  atomic.Int64
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startSlowServer(t *testing.T, firehose bool) *slowServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &slowServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			if firehose {
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					chunk := make([]byte, slowChunk)
					for {
						n, err := c.Write(chunk)
						s.sent.Add(int64(n))
						if err != nil {
							return
						}
					}
				}()
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// gatedClient is a SPDY port-forward client (the upgrade by hand and a bare
// spdystream connection) whose socket reads can be stopped: a client that
// stops reading altogether, with nothing of its own queued in this process.
type gatedClient struct {
	conn    *spdystream.Connection
	tc      net.Conn
	stopped atomic.Bool
	resume  chan struct{}
	served  chan struct{}
	nextID  int
}

// gatedConn reads through br until stopped, then blocks until resumed.
type gatedConn struct {
	net.Conn
	br *bufio.Reader
	c  *gatedClient
}

func (g gatedConn) Read(p []byte) (int, error) {
	if g.c.stopped.Load() {
		<-g.c.resume
	}
	return g.br.Read(p)
}

func dialGated(t *testing.T, e *env, pod string) *gatedClient {
	t.Helper()
	tc, err := tls.Dial("tcp", e.gw.Addr(), e.tlsConfig(true))
	if err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/namespaces/default/pods/" + pod + "/portforward"
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"+
		"X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n", path, e.gw.Addr())
	if _, err := io.WriteString(tc, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(tc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		_ = tc.Close()
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	c := &gatedClient{tc: tc, resume: make(chan struct{}), served: make(chan struct{})}
	if c.conn, err = spdystream.NewConnection(gatedConn{tc, br, c}, false); err != nil {
		t.Fatal(err)
	}
	go func() { c.conn.Serve(spdystream.NoOpStreamHandler); close(c.served) }()
	t.Cleanup(func() {
		if c.stopped.Load() {
			close(c.resume)
		}
		_ = tc.Close()
		select {
		case <-c.served:
		case <-time.After(10 * time.Second):
			t.Errorf("spdystream Serve still running 10s after the connection closed")
		}
	})
	return c
}

// stall stops the client's reads: spdystream's reader blocks, the socket's
// receive buffer fills, and the gateway's writes to it block.
func (c *gatedClient) stall() { c.stopped.Store(true) }

// open creates an error and a data stream to port (requestID from 0 on, as
// client-go counts) and returns the data stream; the error stream is
// half-closed and read in the background.
func (c *gatedClient) open(t *testing.T, port int) *spdystream.Stream {
	t.Helper()
	id := strconv.Itoa(c.nextID)
	c.nextID++
	var data *spdystream.Stream
	for _, kind := range []string{"error", "data"} {
		h := http.Header{}
		h.Set("streamType", kind)
		h.Set("port", strconv.Itoa(port))
		h.Set("requestID", id)
		s, err := c.conn.CreateStream(h, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WaitTimeout(30 * time.Second); err != nil {
			t.Fatalf("%s stream to port %d: %v", kind, port, err)
		}
		if kind == "error" {
			_ = s.Close()
			go func() { _, _ = io.Copy(io.Discard, s) }()
		} else {
			data = s
		}
	}
	return data
}

// warmUp runs one small hash-pod exchange on the session, so the
// per-session state (header decoders, TLS buffers) exists before the heap
// baseline.
func (c *gatedClient) warmUp(t *testing.T) {
	t.Helper()
	data := c.open(t, hashPort)
	if _, err := hashpod.Exchange(spdyStreamConn{data}, 64<<10, 64<<10, 1); err != nil {
		t.Fatalf("warm-up exchange: %v", err)
	}
	_ = data.Close()
}

// spdyStreamConn is a spdystream stream as the net.Conn hashpod.Exchange takes.
type spdyStreamConn struct{ *spdystream.Stream }

func (c spdyStreamConn) Close() error                   { return c.Stream.Reset() }
func (spdyStreamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (spdyStreamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (spdyStreamConn) SetDeadline(time.Time) error      { return nil }
func (spdyStreamConn) SetReadDeadline(time.Time) error  { return nil }
func (spdyStreamConn) SetWriteDeadline(time.Time) error { return nil }
