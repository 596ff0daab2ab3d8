// Package hashpod is the "hash pod" the test tiers forward to: a TCP server
// and its client that check every byte in both directions.
//
//	client → pod  header: uint64 up, uint64 down, uint64 seed (big endian, 24 bytes)
//	client → pod  up bytes: prng(seed, 'u')
//	pod → client  down bytes: prng(seed, 'd'), sent while the up bytes arrive
//	pod → client  SHA-256 of the up bytes it read (32 bytes), after both
//	              directions are done; then the pod closes the connection.
//
// prng is ChaCha8 keyed with the seed, the direction byte and a fixed label.
// The seed travels in the header so that concurrent connections carry
// different bytes and a stream mixed up with another one is caught. A header
// asking for more than the server's bound in either direction is refused by
// closing the connection without a byte.
package hashpod

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

const (
	// HeaderLen is the size of the header that opens every exchange.
	HeaderLen = 24
	// DefaultMaxBytes bounds what one header may ask for in each direction
	// when Options.MaxBytes is zero.
	DefaultMaxBytes = 64 << 20

	chunk = 32 << 10
)

// Stream is the deterministic byte stream of one direction ('u' or 'd') of
// the exchange with the given seed.
func Stream(seed uint64, dir byte) io.Reader {
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], seed)
	key[8] = dir
	copy(key[9:], "pfgateway-hash-pod")
	return rand.NewChaCha8(key)
}

// Header is the opening of an exchange. Tests that speak the protocol by hand
// (an endless download, say) send it themselves.
func Header(up, down, seed uint64) []byte {
	hdr := make([]byte, HeaderLen)
	binary.BigEndian.PutUint64(hdr[0:], up)
	binary.BigEndian.PutUint64(hdr[8:], down)
	binary.BigEndian.PutUint64(hdr[16:], seed)
	return hdr
}

// Options configure a Server.
type Options struct {
	// MaxBytes bounds up and down of one header; zero means DefaultMaxBytes.
	// A test that reads an endless download raises it.
	MaxBytes uint64
	// Timeout is the deadline of each connection from its accept; zero for
	// none.
	Timeout time.Duration
}

// Server is a hash pod listening on 127.0.0.1.
type Server struct {
	o      Options
	ln     net.Listener
	mu     sync.Mutex // protects the fields below
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// Start listens on a free loopback port and serves until Close.
func Start(o Options) (*Server, error) {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{o: o, ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops accepting, closes the open connections (their clients see a
// short stream) and waits for their goroutines.
func (s *Server) Close() {
	_ = s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed { // accepted while Close ran: it would miss this one
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// serve runs one exchange. Any failure just closes c: the client sees a
// short stream, which it reports.
func (s *Server) serve(c net.Conn) {
	defer c.Close()
	if s.o.Timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(s.o.Timeout))
	}
	var hdr [HeaderLen]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	up, down, seed := binary.BigEndian.Uint64(hdr[0:]), binary.BigEndian.Uint64(hdr[8:]), binary.BigEndian.Uint64(hdr[16:])
	if up > s.o.MaxBytes || down > s.o.MaxBytes {
		return
	}
	werr := make(chan error, 1)
	go func() { werr <- writeStream(c, Stream(seed, 'd'), int64(down)) }()
	h := sha256.New()
	_, rerr := io.CopyN(h, c, int64(up))
	if err := <-werr; err != nil || rerr != nil {
		return
	}
	_, _ = c.Write(h.Sum(nil))
}

// writeStream writes n bytes of r to w in chunks.
func writeStream(w io.Writer, r io.Reader, n int64) error {
	buf := make([]byte, chunk)
	for n > 0 {
		b := buf[:min(int64(len(buf)), n)]
		_, _ = r.Read(b) // a ChaCha8 stream always fills b
		if _, err := w.Write(b); err != nil {
			return err
		}
		n -= int64(len(b))
	}
	return nil
}

// Result is what one exchange measured.
type Result struct {
	Up, Down int64
	Elapsed  time.Duration
}

// MiBps is the payload rate, both directions added up.
func (r Result) MiBps() float64 {
	return float64(r.Up+r.Down) / (1 << 20) / r.Elapsed.Seconds()
}

// Exchange runs the protocol over conn: it sends up bytes, asks for down
// bytes, checks every byte that came down against the expected stream and the
// pod's digest of what went up against its own. It does not set deadlines.
// When reading fails it closes conn to stop its writer; otherwise conn stays
// open (the pod closes its side after the digest).
func Exchange(conn net.Conn, up, down int64, seed uint64) (Result, error) {
	start := time.Now()
	upSum := make(chan []byte, 1)
	werr := make(chan error, 1)
	go func() {
		if _, err := conn.Write(Header(uint64(up), uint64(down), seed)); err != nil {
			werr <- fmt.Errorf("writing header: %w", err)
			return
		}
		h := sha256.New()
		if err := writeStream(io.MultiWriter(conn, h), Stream(seed, 'u'), up); err != nil {
			werr <- fmt.Errorf("writing up bytes: %w", err)
			return
		}
		upSum <- h.Sum(nil)
		werr <- nil
	}()

	err := readDown(conn, seed, down)
	var digest [sha256.Size]byte
	if err == nil {
		if _, err = io.ReadFull(conn, digest[:]); err != nil {
			err = fmt.Errorf("reading the pod's digest of the up bytes: %w", err)
		}
	}
	if err != nil {
		_ = conn.Close() // unblocks the writer
		<-werr
		return Result{}, fmt.Errorf("seed %#x: %w", seed, err)
	}
	if err := <-werr; err != nil {
		return Result{}, fmt.Errorf("seed %#x: %w", seed, err)
	}
	if want := <-upSum; !bytes.Equal(digest[:], want) {
		return Result{}, fmt.Errorf("seed %#x: the pod hashed the up bytes to %x, the client sent %x", seed, digest, want)
	}
	return Result{Up: up, Down: down, Elapsed: time.Since(start)}, nil
}

// readDown reads n bytes and checks them against the expected stream: the
// first differing offset when there is one, and the SHA-256 of both.
func readDown(r io.Reader, seed uint64, n int64) error {
	want := Stream(seed, 'd')
	got, exp := make([]byte, chunk), make([]byte, chunk)
	hGot, hWant := sha256.New(), sha256.New()
	var off int64
	for off < n {
		m := min(int64(chunk), n-off)
		if _, err := io.ReadFull(r, got[:m]); err != nil {
			return fmt.Errorf("reading down bytes at offset %d of %d: %w", off, n, err)
		}
		_, _ = want.Read(exp[:m])
		if !bytes.Equal(got[:m], exp[:m]) {
			for i := range m {
				if got[i] != exp[i] {
					return fmt.Errorf("down bytes differ from offset %d of %d", off+i, n)
				}
			}
		}
		hGot.Write(got[:m])
		hWant.Write(exp[:m])
		off += m
	}
	if g, w := hGot.Sum(nil), hWant.Sum(nil); !bytes.Equal(g, w) {
		return fmt.Errorf("down bytes hash to %x, want %x", g, w)
	}
	return nil
}
