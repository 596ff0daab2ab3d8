package controlplane

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
	"time"
)

// The "pod" behind the test kubelet checks every byte both ways:
//
//	client → pod  header: uint64 up, uint64 down, uint64 seed (big endian)
//	client → pod  up bytes: prng(seed, 'u')
//	pod → client  down bytes: prng(seed, 'd'), while the up bytes arrive
//	pod → client  SHA-256 of the up bytes it read, after both directions;
//	              then the pod closes the connection.
const maxTransfer = 64 << 20 // bounds what one header may ask for

func prng(seed uint64, dir byte) *rand.ChaCha8 {
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], seed)
	key[8] = dir
	copy(key[9:], "pfgateway-controlplane")
	return rand.NewChaCha8(key)
}

type hashServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startHashServer() (*hashServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &hashServer{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *hashServer) addr() string { return s.ln.Addr().String() }

func (s *hashServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				_ = c.Close()
			}()
			_ = serveHash(c)
		}()
	}
}

func serveHash(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	var hdr [24]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	up, down, seed := binary.BigEndian.Uint64(hdr[0:]), binary.BigEndian.Uint64(hdr[8:]), binary.BigEndian.Uint64(hdr[16:])
	if up > maxTransfer || down > maxTransfer {
		return fmt.Errorf("transfer too large: %d/%d", up, down)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := io.CopyN(c, prng(seed, 'd'), int64(down))
		wrote <- err
	}()
	h := sha256.New()
	_, rerr := io.CopyN(h, c, int64(up))
	if werr := <-wrote; werr != nil {
		return werr
	}
	if rerr != nil {
		return rerr
	}
	_, err := c.Write(h.Sum(nil))
	return err
}

func (s *hashServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// exchange sends up bytes and receives down bytes over c and compares the
// SHA-256 of each direction: the pod's hash of what it read against the
// hash of what was sent, and the hash of what arrived against the pod's
// stream. It closes c.
func exchange(c net.Conn, up, down int, seed uint64) error {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	var hdr [24]byte
	binary.BigEndian.PutUint64(hdr[0:], uint64(up))
	binary.BigEndian.PutUint64(hdr[8:], uint64(down))
	binary.BigEndian.PutUint64(hdr[16:], seed)
	sent := make(chan error, 1)
	sentSum := sha256.New()
	go func() {
		if _, err := c.Write(hdr[:]); err != nil {
			sent <- err
			return
		}
		_, err := io.CopyN(io.MultiWriter(c, sentSum), prng(seed, 'u'), int64(up))
		sent <- err
	}()
	got := sha256.New()
	if _, err := io.CopyN(got, c, int64(down)); err != nil {
		return fmt.Errorf("reading %d bytes from the pod: %w", down, err)
	}
	if err := <-sent; err != nil {
		return fmt.Errorf("sending %d bytes to the pod: %w", up, err)
	}
	podSum := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, podSum); err != nil {
		return fmt.Errorf("reading the pod's hash: %w", err)
	}
	want := sha256.New()
	_, _ = io.CopyN(want, prng(seed, 'd'), int64(down))
	var errs []error
	if !bytes.Equal(podSum, sentSum.Sum(nil)) {
		errs = append(errs, fmt.Errorf("client→pod: pod read SHA-256 %x, client sent %x", podSum, sentSum.Sum(nil)))
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		errs = append(errs, fmt.Errorf("pod→client: client read SHA-256 %x, pod sent %x", got.Sum(nil), want.Sum(nil)))
	}
	return errors.Join(errs...)
}
