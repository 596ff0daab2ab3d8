package streams

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// dialKind is one of client-go's port-forward dialers.
type dialKind string

const (
	dialSPDY   dialKind = "spdy"             // spdy.RoundTripperFor + spdy.NewDialer
	dialTunnel dialKind = "websocket-tunnel" // portforward.NewSPDYOverWebsocketDialer
)

// forward is a running client-go PortForwarder whose connection goes
// through a tapProxy, so the SPDY frames (unwrapped from the WebSocket
// tunnel) end up in a transcript like the raw client's.
type forward struct {
	t     *testing.T
	e     *env
	proxy *tapProxy
	local map[int32]string // remote port → 127.0.0.1:N
	done  chan error       // ForwardPorts' result
	stop  func()

	mu  sync.Mutex
	log []string
}

// startForward forwards local ports to the given ports of pod "p" the way
// kubectl builds its dialer, and waits on the ready channel.
func startForward(t *testing.T, e *env, kind dialKind, ports ...int32) *forward {
	t.Helper()
	target, upTLS := e.target("p")
	proxy := startTapProxy(t, e, target.Host, upTLS, kind == dialTunnel)
	cfg := restConfig(proxy.addr(), e.cluster.CA.CertPEM, e.user)
	u := &url.URL{Scheme: "https", Host: proxy.addr(), Path: target.Path}
	var d httpstream.Dialer
	switch kind {
	case dialSPDY:
		rt, up, err := spdy.RoundTripperFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		d = spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u)
	case dialTunnel:
		var err error
		if d, err = portforward.NewSPDYOverWebsocketDialer(u, cfg); err != nil {
			t.Fatal(err)
		}
	}
	var specs []string
	for _, p := range ports {
		specs = append(specs, "0:"+port(p))
	}
	stopCh, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.NewOnAddresses(d, []string{"127.0.0.1"}, specs, stopCh, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	f := &forward{t: t, e: e, proxy: proxy, local: map[int32]string{}, done: make(chan error, 1),
		stop: func() { once.Do(func() { close(stopCh) }) }}
	go func() { f.done <- pf.ForwardPorts() }()
	t.Cleanup(func() {
		f.stop()
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
			t.Errorf("ForwardPorts still running 10s after stop")
		}
	})
	select {
	case <-ready:
	case err := <-f.done:
		t.Fatalf("ForwardPorts: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("port forward not ready after 20s")
	}
	fp, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range fp {
		f.local[int32(p.Remote)] = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Local)))
	}
	return f
}

func (f *forward) logf(format string, args ...any) {
	f.mu.Lock()
	f.log = append(f.log, f.e.names.Replace(fmt.Sprintf(format, args...)))
	f.mu.Unlock()
}

// dial opens a local connection, as a user's program would.
func (f *forward) dial(remote int32) *net.TCPConn {
	f.t.Helper()
	c, err := net.Dial("tcp", f.local[remote])
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// readToEOF reads c to its end and logs what came and how it ended.
func (f *forward) readToEOF(c net.Conn, what string) []byte {
	f.t.Helper()
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() { b, err := io.ReadAll(c); ch <- res{b, err} }()
	var r res
	select {
	case r = <-ch:
	case <-time.After(20 * time.Second):
		// Not fatal: the case goes on so that its transcript shows why.
		f.t.Errorf("%s: no end after 20s", what)
		f.logf("%s: no end after 20s", what)
		return nil
	}
	end := "EOF"
	if r.err != nil {
		end = r.err.Error()
	}
	f.logf("%s: read %s then %s", what, describe(r.b), end)
	return r.b
}

// frames is the transcript so far of the forwarder's one connection.
func (f *forward) frames() transcript {
	w := f.proxy.wire(0)
	if w == nil {
		return ""
	}
	return decodeWire(w, f.e.names)
}

// waitFrame waits for line to appear in the transcript: the point where
// client-go has nothing left to do for a local connection.
func (f *forward) waitFrame(line string) {
	f.t.Helper()
	eventually(f.t, 20*time.Second, "frame "+line, func() bool {
		return strings.Contains("\n"+string(f.frames()), "\n"+line+"\n")
	})
}

// ended waits at most d for ForwardPorts to return on its own and logs it.
func (f *forward) ended(d time.Duration) bool {
	select {
	case err := <-f.done:
		f.done <- err // for the cleanup
		f.logf("ForwardPorts returned: %v", err)
		return true
	case <-time.After(d):
		return false
	}
}

// result stops the forwarder as Ctrl-C does (unless it has ended), logs
// what ForwardPorts returned and returns the log and transcript.
func (f *forward) result() result {
	f.t.Helper()
	select {
	case err := <-f.done:
		f.done <- err
	default:
		f.proxy.closing()
		f.stop()
		err := recv(f.t, f.done, 10*time.Second, "ForwardPorts to return after stop")
		f.done <- err
		f.logf("stopped; ForwardPorts returned: %v", err)
	}
	// ForwardPorts returns once client-go has written its last frame; the
	// proxy may still be relaying it.
	if w := f.proxy.wire(0); w != nil {
		recv(f.t, w.done, 10*time.Second, "the tapped connection to close")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return result{frames: f.frames(), log: append([]string(nil), f.log...)}
}
