package hashpod

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func start(t *testing.T, o Options) *Server {
	t.Helper()
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func dial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

func TestRoundTrip(t *testing.T) {
	s := start(t, Options{})
	for _, sz := range [][2]int64{{0, 0}, {1, 0}, {0, 1}, {1000, 70000}, {chunk + 1, 3*chunk - 1}, {1 << 20, 1 << 20}} {
		c := dial(t, s)
		res, err := Exchange(c, sz[0], sz[1], uint64(sz[0])<<32|uint64(sz[1]))
		if err != nil {
			t.Fatalf("%d up / %d down: %v", sz[0], sz[1], err)
		}
		if res.Up != sz[0] || res.Down != sz[1] {
			t.Errorf("result %+v, want %d up / %d down", res, sz[0], sz[1])
		}
		// The pod closes after its digest: nothing more comes.
		if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
			t.Errorf("%d up / %d down: %d bytes after the digest, %v; want a clean EOF", sz[0], sz[1], n, err)
		}
	}
}

// corruptConn flips one byte of what is written or read at a stream offset.
type corruptConn struct {
	net.Conn
	writeAt, readAt int64 // -1: leave that direction alone
	mu              sync.Mutex
	written, read   int64
}

func (c *corruptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	q := append([]byte(nil), p...)
	if i := c.writeAt - c.written; i >= 0 && i < int64(len(q)) {
		q[i] ^= 0x01
	}
	c.written += int64(len(q))
	c.mu.Unlock()
	return c.Conn.Write(q)
}

func (c *corruptConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if i := c.readAt - c.read; i >= 0 && i < int64(n) {
		p[i] ^= 0x01
	}
	c.read += int64(n)
	c.mu.Unlock()
	return n, err
}

func TestCorruptionDetected(t *testing.T) {
	s := start(t, Options{})
	for _, tt := range []struct {
		name            string
		writeAt, readAt int64
		want            string
	}{
		{"up", HeaderLen + 100000, -1, "the pod hashed the up bytes"},
		{"down", -1, 70000, "down bytes differ from offset 70000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &corruptConn{Conn: dial(t, s), writeAt: tt.writeAt, readAt: tt.readAt}
			_, err := Exchange(c, 256<<10, 256<<10, 42)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestBoundRefused(t *testing.T) {
	for _, tt := range []struct {
		name     string
		o        Options
		up, down int64
	}{
		{"default bound, up", Options{}, DefaultMaxBytes + 1, 0},
		{"default bound, down", Options{}, 0, DefaultMaxBytes + 1},
		{"set bound", Options{MaxBytes: 1 << 20}, 1 << 10, 1<<20 + 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, start(t, tt.o))
			if _, err := c.Write(Header(uint64(tt.up), uint64(tt.down), 1)); err != nil {
				t.Fatal(err)
			}
			// Refused: the pod closes without sending a byte.
			if n, _ := io.Copy(io.Discard, c); n != 0 {
				t.Errorf("the pod sent %d bytes, want none", n)
			}
		})
	}
	// Exchange reports the refusal.
	c := dial(t, start(t, Options{MaxBytes: 1 << 10}))
	if _, err := Exchange(c, 1<<10, 1<<10+1, 1); err == nil {
		t.Error("Exchange succeeded past the bound")
	}
}
