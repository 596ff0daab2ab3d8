package streams

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Container ports of the scripted pod "p". Each maps to a local TCP server
// with one behaviour; the kubelet dials it per forwarded connection.
const (
	portEcho      = 8001 // echoes, half-closes after the client's EOF
	portDigest    = 8002 // reads to EOF, then writes sha256(input) + payloadHalf, closes
	portCloser    = 8003 // writes payloadDown, then closes (reading nothing)
	portHalfClose = 8004 // writes payloadHalf, half-closes, reads to EOF
	portSink      = 8005 // reads to EOF, reporting progress
	portReset     = 8006 // reads 1 KiB, then resets (SO_LINGER 0)
	portRefused   = 8007 // nothing listens
)

// Payloads, sized to span many 32 KiB DATA frames and TCP reads.
var (
	payloadUp   = pseudoRandom(1, 3<<20+123)
	payloadDown = pseudoRandom(2, 1<<20+77)
	// payloadHalf is what a pod sends after one direction has ended: the
	// kubelet gives the other direction only 1 s (its linger) to finish,
	// so on a loaded CI machine it stays small.
	payloadHalf = payloadDown[:64<<10]
)

func init() {
	namePayload("up", payloadUp)
	namePayload("down", payloadDown)
	namePayload("up[:1K]", payloadUp[:1024])
	namePayload("empty", nil)
	namePayload("down[:64K]", payloadHalf)
	digest := sha256.Sum256(payloadUp)
	namePayload("sha(up)+down[:64K]", append(digest[:], payloadHalf...))
}

func pseudoRandom(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// podEvent is what a pod server saw on one connection.
type podEvent struct {
	port int32
	n    int    // bytes read from the client
	sum  string // sha256 of them, hex
	end  string // how reading ended: "EOF" or the error
}

func (ev podEvent) String() string {
	name, ok := payloadNames.Load(ev.sum)
	if !ok {
		name = "sha256:" + ev.sum[:12]
	}
	return fmt.Sprintf("pod %d read %dB=%v then %s", ev.port, ev.n, name, ev.end)
}

// pod runs the scripted servers of pod default/p for one env.
type pod struct {
	events   chan podEvent // one per connection that ended reading
	progress chan int      // sink: bytes read so far, after each read
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns map[int32]int // accepted connections by port
}

// startPod starts the servers and adds pod "p" to e's cluster.
func startPod(t *testing.T, e *env) *pod {
	t.Helper()
	p := &pod{events: make(chan podEvent, 16), progress: make(chan int, 1024), conns: map[int32]int{}}
	t.Cleanup(p.wg.Wait) // runs after the listeners' cleanups below
	ports := map[int32]string{}
	for port, h := range map[int32]func(*net.TCPConn){
		portEcho: p.echo, portDigest: p.digest, portCloser: p.closer,
		portHalfClose: p.halfClose, portSink: p.sink, portReset: p.reset,
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[port] = ln.Addr().String()
		p.wg.Add(1)
		go p.serve(ln, port, h)
		t.Cleanup(func() { ln.Close() })
	}
	ports[portRefused] = refusedAddr(t)
	for port, addr := range ports {
		e.names.add(addr, fmt.Sprintf("pod:%d", port))
	}
	e.addPod("p", ports)
	return p
}

func (p *pod) serve(ln net.Listener, port int32, h func(*net.TCPConn)) {
	defer p.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns[port]++
		p.mu.Unlock()
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer c.Close()
			// A dead test must not leave a pod blocked forever.
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			h(c.(*net.TCPConn))
		}()
	}
}

// readToEnd reads c until EOF or an error and reports it.
func (p *pod) readToEnd(c *net.TCPConn, port int32, seen []byte) []byte {
	h := sha256.New()
	h.Write(seen)
	n := len(seen)
	buf := make([]byte, 32<<10)
	var all []byte
	for {
		m, err := c.Read(buf)
		h.Write(buf[:m])
		n += m
		all = append(all, buf[:m]...)
		if port == portSink && m > 0 {
			p.progress <- n
		}
		if err != nil {
			end := "EOF"
			if err != io.EOF {
				end = err.Error()
			}
			p.events <- podEvent{port: port, n: n, sum: hex.EncodeToString(h.Sum(nil)), end: end}
			return all
		}
	}
}

func (p *pod) echo(c *net.TCPConn) {
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(c, h), c)
	end := "EOF"
	if err != nil {
		end = err.Error()
	}
	_ = c.CloseWrite()
	p.events <- podEvent{port: portEcho, n: int(n), sum: hex.EncodeToString(h.Sum(nil)), end: end}
}

func (p *pod) digest(c *net.TCPConn) {
	in := p.readToEnd(c, portDigest, nil)
	sum := sha256.Sum256(in)
	_, _ = c.Write(append(sum[:], payloadHalf...))
}

func (p *pod) closer(c *net.TCPConn) { _, _ = c.Write(payloadDown) }

func (p *pod) halfClose(c *net.TCPConn) {
	_, _ = c.Write(payloadHalf)
	_ = c.CloseWrite()
	p.readToEnd(c, portHalfClose, nil)
}

func (p *pod) sink(c *net.TCPConn) { p.readToEnd(c, portSink, nil) }

func (p *pod) reset(c *net.TCPConn) {
	buf := make([]byte, 1024)
	n, err := io.ReadFull(c, buf)
	end := "reset by the pod"
	if err != nil {
		end = err.Error()
	}
	p.events <- podEvent{port: portReset, n: n, sum: hex.EncodeToString(sha256Sum(buf[:n])), end: end}
	_ = c.SetLinger(0) // Close now sends RST
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// event waits for the next pod event.
func (p *pod) event(t testing.TB) podEvent {
	t.Helper()
	return recv(t, p.events, 20*time.Second, "a pod connection to end")
}

// accepted is how many connections the kubelet opened to port so far.
func (p *pod) accepted(port int32) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[port]
}

// waitRead waits until the sink has read n bytes on its connection.
func (p *pod) waitRead(t testing.TB, n int) {
	t.Helper()
	for got := 0; got < n; {
		got = recv(t, p.progress, 20*time.Second, fmt.Sprintf("the pod to read %d bytes", n))
	}
}

// refusedAddr is a loopback address nothing listens on. The port stays
// bound (without SO_REUSEADDR and without listen) until the test ends, so
// no listener of a parallel test can take it: a dial is refused.
func refusedAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
