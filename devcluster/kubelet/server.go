// Package kubelet is a test kubelet: it serves only the kubelet's
// port-forward endpoint, with the same streaming server library the kubelet
// and containerd use (k8s.io/cri-streaming/pkg/streaming/portforward), behind
// real TLS that requires and verifies client certificates.
//
// Pods are not containers here: each pod port maps to a local TCP address,
// so a demo, an end-to-end test or a benchmark can put any server behind a
// "pod" and reach it through the exact wire protocols a gateway must speak to
// real kubelets: SPDY/3.1, the legacy v4 WebSocket channel protocol and SPDY
// tunnelled over WebSocket.
package kubelet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pfserver "k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// Defaults mirror the kubelet's own settings so that timing-sensitive tests
// see the behaviour of a real node.
const (
	// DefaultStreamIdleTimeout is the kubelet's default
	// streamingConnectionIdleTimeout.
	DefaultStreamIdleTimeout = 4 * time.Hour
	// DefaultStreamCreationTimeout is the kubelet's default time to wait for
	// both streams of a forwarded connection.
	DefaultStreamCreationTimeout = 30 * time.Second
	// DefaultForwardLinger is how long a forward waits for the second
	// direction after the first one ended, as containerd does (socat's -t
	// default).
	DefaultForwardLinger = time.Second
	// DefaultAddr listens on loopback only: the kubelet here is for tests.
	DefaultAddr = "127.0.0.1:0"

	// readHeaderTimeout bounds slow clients before the upgrade; there is no
	// Read/WriteTimeout because upgraded streams live for hours.
	readHeaderTimeout = 10 * time.Second
	// closeWait bounds how long Close waits for streaming handlers to unwind
	// after their connections were closed under them.
	closeWait = 5 * time.Second
)

// Options configure Start.
type Options struct {
	// TLS is the serving configuration: Certificates (or GetCertificate) and
	// ClientCAs must be set. The kubelet clones it and forces
	// ClientAuth = RequireAndVerifyClientCert, MinVersion >= TLS 1.2 and
	// NextProtos = ["http/1.1"] (upgrades do not exist in HTTP/2).
	TLS *tls.Config
	// Addr is the listen address; DefaultAddr when empty.
	Addr string
	// StreamIdleTimeout closes a port-forward session that carried no
	// frames for this long; DefaultStreamIdleTimeout when zero.
	StreamIdleTimeout time.Duration
	// StreamCreationTimeout is how long the server waits for the second
	// stream of a data/error pair; DefaultStreamCreationTimeout when zero.
	StreamCreationTimeout time.Duration
	// ForwardLinger is how long a forwarded connection waits for its second
	// direction once the first ended; DefaultForwardLinger when zero. Tests
	// whose pod answers after the client's FIN lengthen it on loaded machines.
	ForwardLinger time.Duration
}

// Pod is a pod the kubelet knows: which local TCP address each container
// port maps to.
type Pod struct {
	Namespace, Name, UID string
	// Ports maps a container port to a dialable address, e.g. "127.0.0.1:8080".
	Ports map[int32]string
}

// RecordedRequest is one request as the kubelet saw it after TLS, kept so
// tests can assert that no caller credential travelled to the node.
type RecordedRequest struct {
	Method string
	// URL is the path and raw query, as sent.
	URL string
	// Header is a clone of the request headers.
	Header http.Header
	// ClientCN is the CommonName of the verified client certificate.
	ClientCN string
}

// HandlerHook can take over a request before routing; it returns true when
// it handled the request.
type HandlerHook func(w http.ResponseWriter, r *http.Request) bool

// Kubelet is a running test kubelet.
type Kubelet struct {
	opts   Options
	ln     *trackingListener
	srv    *http.Server
	ctx    context.Context // cancelled by Close: stops forwards and dials
	cancel context.CancelFunc

	podsMu sync.RWMutex
	pods   map[string]Pod // by namespace/name

	reqMu sync.Mutex
	reqs  []RecordedRequest

	hook atomic.Pointer[HandlerHook]

	// lifeMu guards closed and orders wg.Add against Close's wg.Wait.
	lifeMu    sync.Mutex
	closed    bool
	wg        sync.WaitGroup // streaming handlers and forwards in flight
	closeOnce sync.Once
	closeErr  error
}

// Start listens and serves until Close.
func Start(o Options) (*Kubelet, error) {
	if o.TLS == nil {
		return nil, errors.New("kubelet: Options.TLS is required")
	}
	if o.TLS.ClientCAs == nil {
		// Without ClientCAs Go would verify client certificates against the
		// system roots, which is never what a kubelet does.
		return nil, errors.New("kubelet: Options.TLS.ClientCAs is required")
	}
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.StreamIdleTimeout <= 0 {
		o.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if o.ForwardLinger <= 0 {
		o.ForwardLinger = DefaultForwardLinger
	}
	if o.StreamCreationTimeout <= 0 {
		o.StreamCreationTimeout = DefaultStreamCreationTimeout
	}
	cfg := serverConfig(o.TLS)

	raw, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("kubelet: listen %s: %w", o.Addr, err)
	}
	k := &Kubelet{
		opts: o,
		ln:   &trackingListener{Listener: raw, conns: map[*trackedConn]struct{}{}},
		pods: map[string]Pod{},
	}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	k.srv = &http.Server{
		Handler:           k,
		ReadHeaderTimeout: readHeaderTimeout,
		// An empty, non-nil map keeps HTTP/2 off: upgrades need HTTP/1.1.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	go k.srv.Serve(tls.NewListener(k.ln, cfg)) //nolint:errcheck // returns ErrServerClosed on Close
	return k, nil
}

// Addr returns the host:port actually bound.
func (k *Kubelet) Addr() string { return k.ln.Addr().String() }

// Port returns the TCP port actually bound.
func (k *Kubelet) Port() int { return k.ln.Addr().(*net.TCPAddr).Port }

// SetPod adds or replaces a pod. Sessions already open see the new port map
// on their next forwarded connection, like a pod whose container restarted.
func (k *Kubelet) SetPod(p Pod) {
	ports := make(map[int32]string, len(p.Ports))
	for port, addr := range p.Ports {
		ports[port] = addr
	}
	p.Ports = ports
	k.podsMu.Lock()
	k.pods[p.Namespace+"/"+p.Name] = p
	k.podsMu.Unlock()
}

// DeletePod forgets a pod: new requests get 404 and new forwarded
// connections in open sessions fail.
func (k *Kubelet) DeletePod(ns, name string) {
	k.podsMu.Lock()
	delete(k.pods, ns+"/"+name)
	k.podsMu.Unlock()
}

func (k *Kubelet) pod(ns, name string) (Pod, bool) {
	k.podsMu.RLock()
	defer k.podsMu.RUnlock()
	p, ok := k.pods[ns+"/"+name]
	return p, ok
}

// Requests returns every request served so far, oldest first. The log is
// unbounded; port-forward makes one request per session, not per connection.
func (k *Kubelet) Requests() []RecordedRequest {
	k.reqMu.Lock()
	defer k.reqMu.Unlock()
	out := make([]RecordedRequest, len(k.reqs))
	for i, r := range k.reqs {
		r.Header = r.Header.Clone()
		out[i] = r
	}
	return out
}

// SetHandlerHook installs (or, with nil, removes) a hook run for every
// request after it is recorded and before routing.
func (k *Kubelet) SetHandlerHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	if h == nil {
		k.hook.Store(nil)
		return
	}
	hh := HandlerHook(h)
	k.hook.Store(&hh)
}

// Close stops the kubelet abruptly, like a node dying: it closes the
// listener and every accepted connection, hijacked (upgraded) ones included,
// cancels dials and forwards, then waits briefly for streaming handlers.
func (k *Kubelet) Close() error {
	k.closeOnce.Do(func() {
		k.lifeMu.Lock()
		k.closed = true
		k.lifeMu.Unlock()
		k.cancel()
		// http.Server.Close closes the listener and the connections it still
		// owns; it forgets hijacked ones, which the tracking listener closes.
		k.closeErr = k.srv.Close()
		k.ln.closeAll()
		done := make(chan struct{})
		go func() { k.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(closeWait):
			k.closeErr = errors.Join(k.closeErr, fmt.Errorf("kubelet: streaming handlers still running %s after Close", closeWait))
		}
	})
	return k.closeErr
}

// enter registers a streaming handler or forward so Close can wait for it;
// it returns false once Close has started.
func (k *Kubelet) enter() bool {
	k.lifeMu.Lock()
	defer k.lifeMu.Unlock()
	if k.closed {
		return false
	}
	k.wg.Add(1)
	return true
}

// ServeHTTP routes like the kubelet's /portForward web service.
func (k *Kubelet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.record(r)
	if h := k.hook.Load(); h != nil && (*h)(w, r) {
		return
	}
	ns, name, uid, ok := parsePortForwardPath(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "405: Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	// A tunnelling request is a WebSocket request without ?port=; it must
	// not go through NewV4Options, which would reject it.
	tunnel := wsstream.IsWebSocketRequestWithTunnelingProtocol(r)
	var v4 *pfserver.V4Options
	if !tunnel {
		var err error
		if v4, err = pfserver.NewV4Options(r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	// The kubelet's messages: unknown pod and UID mismatch differ.
	p, ok := k.pod(ns, name)
	if !ok {
		http.Error(w, "pod does not exist", http.StatusNotFound)
		return
	}
	if uid != "" && uid != p.UID {
		http.Error(w, "pod not found", http.StatusNotFound)
		return
	}
	if !k.enter() {
		http.Error(w, "kubelet is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer k.wg.Done()

	fwd := &forwarder{k: k, ns: p.Namespace, name: p.Name, uid: p.UID}
	// The kubelet names pods by their full name, name_namespace.
	fullName := p.Name + "_" + p.Namespace
	if tunnel {
		k.serveTunnel(w, r, fwd, fullName, p.UID)
		return
	}
	pfserver.ServePortForward(w, r, fwd, fullName, p.UID, v4,
		k.opts.StreamIdleTimeout, k.opts.StreamCreationTimeout, pfserver.SupportedProtocols)
}

func (k *Kubelet) record(r *http.Request) {
	rec := RecordedRequest{Method: r.Method, URL: r.URL.RequestURI(), Header: r.Header.Clone()}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		rec.ClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	k.reqMu.Lock()
	k.reqs = append(k.reqs, rec)
	k.reqMu.Unlock()
}

// parsePortForwardPath matches /portForward/{ns}/{pod} and
// /portForward/{ns}/{pod}/{uid}.
func parsePortForwardPath(path string) (ns, name, uid string, ok bool) {
	rest, found := strings.CutPrefix(path, "/portForward/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return "", "", "", false
	}
	for _, s := range parts {
		if s == "" {
			return "", "", "", false
		}
	}
	if len(parts) == 3 {
		uid = parts[2]
	}
	return parts[0], parts[1], uid, true
}

// trackingListener remembers every accepted connection until it is closed,
// because http.Server.Close does not close hijacked connections and a test
// must be able to kill upgraded sessions.
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	closed bool
	conns  map[*trackedConn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

// closeAll closes every live connection and any accepted later.
func (l *trackingListener) closeAll() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[*trackedConn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
