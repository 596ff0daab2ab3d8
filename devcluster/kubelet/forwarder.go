package kubelet

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

const (
	// dialTimeout bounds a dial to a pod address; loopback dials either
	// succeed or are refused at once, so this only guards odd test setups.
	dialTimeout = 10 * time.Second
	// copyBufferSize is io.Copy's default and also the SPDY/WebSocket data
	// frame size each chunk becomes.
	copyBufferSize = 32 << 10
)

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// forwarder implements the streaming library's PortForwarder for one
// request's pod. It looks the pod up again for every forwarded connection,
// so a SetPod or DeletePod during a session behaves like a pod restart or
// removal under a live kubectl port-forward.
type forwarder struct {
	k             *Kubelet
	ns, name, uid string
}

// PortForward dials the pod's address for port and copies both ways, the
// way containerd's CRI plugin does (internal/cri/server/sandbox_portforward_linux.go):
// when one direction ends, it waits at most Options.ForwardLinger for the other and
// then returns, and the caller closes the stream. Unlike containerd, EOF from
// the client half-closes the TCP connection to the pod (CloseWrite), so a
// server that reads until EOF (an echo server, an upload sink) answers
// instead of waiting out the linger timeout.
//
// Consequence worth knowing in tests: a client that half-closes and then
// expects more than the linger's worth of response gets it truncated, on a
// real containerd node and here alike.
//
// The returned error is written by the library on the error stream as
// "error forwarding port N to pod P, uid U: <err>".
func (f *forwarder) PortForward(_ context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	k := f.k
	if !k.enter() {
		return fmt.Errorf("kubelet is shutting down")
	}
	defer k.wg.Done()

	p, ok := k.pod(f.ns, f.name)
	if !ok || p.UID != f.uid {
		return fmt.Errorf("failed to find sandbox %q in store: not found", f.sandboxID())
	}
	addr, ok := p.Ports[port]
	if !ok {
		// Nothing listens on an unmapped port inside the pod: report what
		// the dial in the pod's network namespace would have reported.
		refused := &net.OpError{Op: "dial", Net: "tcp4",
			Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)},
			Err:  os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		return f.dialError(port, refused)
	}
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(k.ctx, "tcp", addr)
	if err != nil {
		return f.dialError(port, err)
	}
	defer conn.Close()

	errc := make(chan error, 2)
	go func() { // pod → client
		errc <- copyBuffered(stream, conn)
	}()
	go func() { // client → pod
		err := copyBuffered(conn, stream)
		if err == nil {
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite() //nolint:errcheck // the pod may have gone already
			}
		}
		errc <- err
	}()

	var first error
	select {
	case first = <-errc:
	case <-k.ctx.Done():
		return nil // the kubelet died; nobody is left to read an error
	}
	linger := time.NewTimer(k.opts.ForwardLinger)
	defer linger.Stop()
	select {
	case err := <-errc:
		if first == nil {
			first = err
		}
	case <-linger.C:
	case <-k.ctx.Done():
		return nil
	}
	return first
}

// sandboxID names the pod where containerd would name its sandbox.
func (f *forwarder) sandboxID() string {
	if f.uid != "" {
		return f.uid
	}
	return f.ns + "/" + f.name
}

// dialError words a failed dial like containerd does, so clients and the
// gateway see the message a real node would send.
func (f *forwarder) dialError(port int32, err error) error {
	return fmt.Errorf("failed to connect to localhost:%d inside namespace %q: %w", port, f.sandboxID(), err)
}

// copyBuffered is io.Copy with a pooled buffer. io.CopyBuffer alone would
// ignore the buffer because *net.TCPConn implements ReaderFrom/WriterTo
// (which, for these non-socket peers, fall back to allocating one anyway).
func copyBuffered(dst io.Writer, src io.Reader) error {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
	return err
}
