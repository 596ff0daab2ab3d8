package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

const (
	// podPort is the container port of the benchmark pod.
	podPort = 9000
	// clientBuf is the size of the local client's reads and writes. client-go
	// copies with 32 KiB buffers whatever this is.
	clientBuf = 256 << 10
	// ioTimeout bounds any single transfer step so a wedged path cannot hang the run.
	ioTimeout = 10 * time.Minute
)

// payload returns n random bytes: incompressible, though nothing on these
// paths compresses.
func payload(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// pattern is what every transfer carries, repeated.
var pattern = payload(clientBuf)

// podServer is the pod's TCP server. A connection starts with a 9-byte
// request, an opcode and a big-endian size:
//
//	'D' size: the server sends size bytes (a download);
//	'U' size: the server reads size bytes, then answers their count as 8 bytes (an upload);
//	'u' size: as 'U', but counts only bytes that match the pattern.
//
// Then the server waits for the client to close, so nothing in flight is
// cut by an early close.
type podServer struct {
	ln   net.Listener
	data []byte
	wg   sync.WaitGroup
}

func startPodServer() (*podServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &podServer{ln: ln, data: pattern}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c) }()
		}
	}()
	return p, nil
}

func (p *podServer) Addr() string { return p.ln.Addr().String() }

func (p *podServer) Close() { _ = p.ln.Close(); p.wg.Wait() }

func (p *podServer) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	var hdr [9]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	size := int64(binary.BigEndian.Uint64(hdr[1:]))
	switch hdr[0] {
	case 'D':
		if err := writeN(c, p.data, size); err != nil {
			return
		}
	case 'U', 'u':
		n, err := readN(c, make([]byte, clientBuf), size, hdr[0] == 'u')
		if err != nil {
			return
		}
		var ack [8]byte
		binary.BigEndian.PutUint64(ack[:], uint64(n))
		if _, err := c.Write(ack[:]); err != nil {
			return
		}
	default:
		return
	}
	_, _ = io.Copy(io.Discard, c) // until the client closes
}

func writeN(w io.Writer, buf []byte, size int64) error {
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		left -= n
	}
	return nil
}

// readN reads size bytes; with verify, it checks them against the pattern
// and stops at the first difference.
func readN(r io.Reader, buf []byte, size int64, verify bool) (int64, error) {
	var got int64
	for got < size {
		n, err := r.Read(buf[:min(int64(len(buf)), size-got)])
		if verify && !matches(buf[:n], got) {
			return got, fmt.Errorf("corrupt data at or after byte %d", got)
		}
		got += int64(n)
		if err != nil {
			return got, fmt.Errorf("read %d of %d bytes: %w", got, size, err)
		}
	}
	return got, nil
}

// matches reports whether b is the pattern's content at stream offset off.
func matches(b []byte, off int64) bool {
	for len(b) > 0 {
		i := int(off % int64(len(pattern)))
		n := min(len(b), len(pattern)-i)
		if !bytes.Equal(b[:n], pattern[i:i+n]) {
			return false
		}
		b, off = b[n:], off+int64(n)
	}
	return true
}

// forwardSession is one client-go port-forward session listening on a
// local port.
type forwardSession struct {
	stop  chan struct{}
	done  chan error
	Local string // 127.0.0.1:port
}

// openForward starts client-go's port forwarder to target's container port
// with the SPDY dialer or the SPDY-over-WebSocket tunnel dialer, as kubectl
// would.
func openForward(target *url.URL, cfg *rest.Config, mode string, port int) (*forwardSession, error) {
	var d httpstream.Dialer
	switch mode {
	case modeSPDY:
		transport, upgrader, err := spdy.RoundTripperFor(cfg)
		if err != nil {
			return nil, err
		}
		d = spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, target)
	case modeWebSocket:
		var err error
		if d, err = portforward.NewSPDYOverWebsocketDialer(target, cfg); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown mode %q", mode)
	}
	s := &forwardSession{stop: make(chan struct{}), done: make(chan error, 1)}
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddresses(d, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, s.stop, ready, io.Discard, io.Discard)
	if err != nil {
		return nil, err
	}
	go func() { s.done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-s.done:
		return nil, fmt.Errorf("port-forward to %s (%s): %w", target, mode, err)
	case <-time.After(30 * time.Second):
		close(s.stop)
		return nil, fmt.Errorf("port-forward to %s (%s): not ready after 30s", target, mode)
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		s.Close()
		return nil, fmt.Errorf("port-forward: local ports %v: %v", ports, err)
	}
	s.Local = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local)))
	return s, nil
}

// Close stops the forwarder and waits for it.
func (s *forwardSession) Close() {
	close(s.stop)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

// transfer runs one download or upload of size bytes through a new
// forwarded connection and returns the time from the request to the last
// byte (download) or to the pod's acknowledgement (upload). With verify,
// the receiver checks every byte.
func transfer(local, direction string, size int64, verify bool) (time.Duration, error) {
	c, err := net.DialTimeout("tcp", local, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	var hdr [9]byte
	binary.BigEndian.PutUint64(hdr[1:], uint64(size))
	start := time.Now()
	switch direction {
	case dirDownload:
		hdr[0] = 'D'
		if _, err := c.Write(hdr[:]); err != nil {
			return 0, err
		}
		if _, err := readN(c, make([]byte, clientBuf), size, verify); err != nil {
			return 0, fmt.Errorf("download: %w", err)
		}
	case dirUpload:
		hdr[0] = 'U'
		if verify {
			hdr[0] = 'u'
		}
		if _, err := c.Write(hdr[:]); err != nil {
			return 0, err
		}
		if err := writeN(c, pattern, size); err != nil {
			return 0, fmt.Errorf("upload: %w", err)
		}
		var ack [8]byte
		if _, err := io.ReadFull(c, ack[:]); err != nil {
			return 0, fmt.Errorf("upload: no acknowledgement: %w", err)
		}
		if got := int64(binary.BigEndian.Uint64(ack[:])); got != size {
			return 0, fmt.Errorf("upload: the pod received %d good bytes of %d", got, size)
		}
	default:
		return 0, errors.New("unknown direction " + direction)
	}
	return time.Since(start), nil
}
