package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// The hash pod's protocol lets a client check every byte in both directions:
//
//	client → pod  header: uint64 up, uint64 down, uint64 seed (big endian, 24 bytes)
//	client → pod  up bytes: prng(seed, 'u')
//	pod → client  down bytes: prng(seed, 'd'), sent while the up bytes arrive
//	pod → client  SHA-256 of the up bytes it read (32 bytes), after both
//	              directions are done; then the pod closes the connection.
//
// The seed travels in the header so that concurrent connections carry
// different bytes and a stream mixed up with another one is caught.
const (
	headerLen = 24
	chunk     = 32 << 10
)

// prng is the deterministic byte stream of one direction of one connection.
func prng(seed uint64, dir byte) *rand.ChaCha8 {
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], seed)
	key[8] = dir
	copy(key[9:], "pfgateway-e2e-hash-pod")
	return rand.NewChaCha8(key)
}

// hashPod is a TCP server on 127.0.0.1 speaking the protocol above.
type hashPod struct {
	ln     net.Listener
	mu     sync.Mutex // protects the fields below
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startHashPod(t *testing.T) *hashPod {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hashPod{ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *hashPod) Addr() string { return p.ln.Addr().String() }

func (p *hashPod) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			serveHash(c)
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
		}()
	}
}

func (p *hashPod) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func serveHash(c net.Conn) {
	defer c.Close()
	var hdr [headerLen]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	up, down, seed := binary.BigEndian.Uint64(hdr[0:]), binary.BigEndian.Uint64(hdr[8:]), binary.BigEndian.Uint64(hdr[16:])
	werr := make(chan error, 1)
	go func() { werr <- writeStream(c, prng(seed, 'd'), int64(down)) }()
	h := sha256.New()
	_, rerr := io.CopyN(h, c, int64(up))
	if err := <-werr; err != nil || rerr != nil {
		return // the client sees a short stream
	}
	_, _ = c.Write(h.Sum(nil))
}

// writeStream writes n bytes of r to w in chunks.
func writeStream(w io.Writer, r io.Reader, n int64) error {
	buf := make([]byte, chunk)
	for n > 0 {
		b := buf[:min(int64(len(buf)), n)]
		_, _ = r.Read(b)
		if _, err := w.Write(b); err != nil {
			return err
		}
		n -= int64(len(b))
	}
	return nil
}

// result is what one transfer measured.
type result struct {
	up, down int64
	elapsed  time.Duration
}

// mibps is the payload rate, both directions added up.
func (r result) mibps() float64 {
	return float64(r.up+r.down) / (1 << 20) / r.elapsed.Seconds()
}

// transfer runs the hash protocol over conn: it sends up bytes, asks for down
// bytes, and checks the SHA-256 of what came down against the expected stream
// and the pod's digest of what went up against its own. When conn can
// half-close, it then does so and expects a clean EOF with nothing after the
// digest. Failures are reported with t.Errorf (safe from any goroutine) and
// returned. transfer does not close conn.
func transfer(t testing.TB, conn net.Conn, up, down int64) (result, error) {
	res, err := doTransfer(conn, up, down)
	if err != nil {
		t.Errorf("transfer of %d up / %d down bytes: %v", up, down, err)
	}
	return res, err
}

// transferTimeout bounds one transfer: generous, since -race on 2 cores is slow.
func transferTimeout(up, down int64) time.Duration {
	return 60*time.Second + time.Duration((up+down)>>20)*time.Second
}

func doTransfer(conn net.Conn, up, down int64) (result, error) {
	start := time.Now()
	_ = conn.SetDeadline(start.Add(transferTimeout(up, down)))
	defer conn.SetDeadline(time.Time{}) //nolint:errcheck
	seed := rand.Uint64()

	var hdr [headerLen]byte
	binary.BigEndian.PutUint64(hdr[0:], uint64(up))
	binary.BigEndian.PutUint64(hdr[8:], uint64(down))
	binary.BigEndian.PutUint64(hdr[16:], seed)
	upSum := make(chan []byte, 1)
	werr := make(chan error, 1)
	go func() {
		if _, err := conn.Write(hdr[:]); err != nil {
			werr <- fmt.Errorf("writing header: %w", err)
			return
		}
		h := sha256.New()
		if err := writeStream(io.MultiWriter(conn, h), prng(seed, 'u'), up); err != nil {
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
		return result{}, fmt.Errorf("seed %#x: %w", seed, err)
	}
	if err := <-werr; err != nil {
		return result{}, fmt.Errorf("seed %#x: %w", seed, err)
	}
	if want := <-upSum; !bytes.Equal(digest[:], want) {
		return result{}, fmt.Errorf("seed %#x: the pod hashed the up bytes to %x, the client sent %x", seed, digest, want)
	}
	res := result{up: up, down: down, elapsed: time.Since(start)}

	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return res, fmt.Errorf("half-closing: %w", err)
		}
		n, err := io.Copy(io.Discard, conn)
		if err != nil || n != 0 {
			return res, fmt.Errorf("after the digest: %d more bytes, %v; want a clean EOF", n, err)
		}
	}
	return res, nil
}

// readDown reads n bytes and checks them against the expected stream: the
// first differing offset when there is one, and the SHA-256 of both.
func readDown(r io.Reader, seed uint64, n int64) error {
	want := prng(seed, 'd')
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

// transferAll runs n transfers at once, one per connection dial() returns,
// and reports the first failure.
func transferAll(t testing.TB, n int, dial func() (net.Conn, error), up, down int64) (time.Duration, error) {
	start := time.Now()
	errc := make(chan error, n)
	for range n {
		go func() {
			c, err := dial()
			if err != nil {
				t.Errorf("dial: %v", err)
				errc <- err
				return
			}
			defer c.Close()
			_, err = transfer(t, c, up, down)
			errc <- err
		}()
	}
	var errs []error
	for range n {
		errs = append(errs, <-errc)
	}
	return time.Since(start), errors.Join(errs...)
}
