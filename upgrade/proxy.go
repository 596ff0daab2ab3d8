// Package upgrade opens the upgraded connection to a kubelet and splices the
// client to it: SPDY/3.1 and the legacy WebSocket channel protocol are passed
// through byte for byte after the kubelet's 101; the SPDY-over-WebSocket
// tunnel is unwrapped here and reaches the kubelet as SPDY, as it does
// through the API server.
package upgrade

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/netconn"
	"github.com/pfgateway/pfgateway/relay"
	"github.com/pfgateway/pfgateway/session"
	"github.com/pfgateway/pfgateway/status"
)

// Proxy forwards resolved port-forward requests to kubelets.
type Proxy struct {
	Backend *Backend
	Metrics *metrics.Metrics
	// Streams, when set, relays SPDY and WebSocket-tunnel sessions stream
	// by stream (package relay); nil splices them opaquely, as the API
	// server does. Legacy WebSocket sessions are always spliced.
	Streams *StreamOptions
	// Liveness configures pings to both peers; the zero value sends none.
	Liveness Liveness
	// Reconnect replaces a lost kubelet connection under a live
	// stream-aware session (redial.go); the zero value ends the session.
	Reconnect Reconnect
	// BackendFor, when set, may name another backend for a cluster (an
	// upstream API server or a cluster's own kubelet certificates, package
	// clusters); nil answers mean Backend.
	BackendFor func(cluster string) *Backend
}

// StreamOptions configure the stream-aware splice.
type StreamOptions struct {
	EarlyReply      bool
	CreationTimeout time.Duration
	MaxStreams      int
}

// Serve forwards req for session s to the kubelet at target on node, and
// ends s. Every failure before the client's connection is upgraded is a
// metav1.Status; after it, bytes pass untouched.
func (p *Proxy) Serve(w http.ResponseWriter, req *http.Request, s *session.Session, target *url.URL, node string) {
	p.ServeResolved(w, req, s, target, node, nil)
}

// ServeResolved is Serve for a session whose pod re can resolve again:
// with Reconnect enabled, a lost kubelet connection is then replaced.
func (p *Proxy) ServeResolved(w http.ResponseWriter, req *http.Request, s *session.Session, target *url.URL, node string, re Reresolve) {
	up, err := p.backend(s).dial(req.Context(), backendRequest(req, s.Protocol, target, s.Ports))
	if err != nil {
		p.fail(w, req, s, node, err)
		return
	}
	defer func() {
		if up.conn != nil { // not handed to run
			_ = up.conn.Close()
		}
	}()

	if up.resp.StatusCode != http.StatusSwitchingProtocols {
		p.passError(w, req, s, node, up)
		return
	}
	if !upgradedTo(up.resp, s.Protocol) {
		p.fail(w, req, s, node, &BackendError{Reason: metrics.ReasonBadResponse, Err: errors.New("the 101 response lacks the expected upgrade headers")})
		return
	}
	p.Metrics.ObserveBackendUpgrade(s.Cluster, s.Protocol, time.Since(s.Start))

	var client io.ReadWriter
	var clientConn io.Closer
	if s.Protocol == metrics.ProtocolWebSocketTunnel {
		ws, err := newUpgrader(tunnelPrefix+up.resp.Header.Get(httpstream.HeaderProtocolVersion)).Upgrade(w, req, nil)
		if err != nil {
			// gorilla has answered the client already.
			p.Metrics.BackendError(s.Cluster, metrics.ReasonClientUpgrade)
			s.End(metrics.OutcomeRejected, err.Error())
			return
		}
		wc := newWSConn(ws, p.Liveness.WebSocketPingInterval, p.Liveness.WebSocketPingTimeout)
		client, clientConn = wc, wc
	} else {
		conn, bufrw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			p.fail(w, req, s, node, fmt.Errorf("error hijacking connection: %w", err))
			return
		}
		// The kubelet's own 101 and whatever followed it, byte for byte.
		if _, err := conn.Write(up.raw[:up.headLen]); err != nil {
			_ = conn.Close()
			s.End(metrics.OutcomeCompleted, err.Error())
			return
		}
		client, clientConn = readWriter{clientReader(conn, bufrw.Reader), netconn.Writer(conn)}, conn
	}
	// The stream-aware splice can tell the client why the gateway closes it.
	var closer io.Closer = closers{clientConn, up.conn}
	var stop *relay.Stopper
	streamAware := p.Streams != nil && s.Protocol != metrics.ProtocolWebSocketLegacy
	if streamAware {
		stop = relay.NewStopper(closer)
		closer = stop
	}
	s.Upgraded(closer)
	backendR := up.body()
	// The session goes on on goroutines of its own and the handler
	// returns: the HTTP server then lets go of the hijacked connection's
	// state (its reader and writer, the filter chain's request) and of the
	// handler's deep stack, ≈ 20 KiB per idle session (BENCHMARKS.md,
	// idle-session memory). The request's context ends with the handler;
	// the session keeps only its values (user, cluster, audit record).
	req = req.WithContext(context.WithoutCancel(req.Context()))
	backend := up.conn
	up.conn = nil // the session's now, not the deferred Close's
	if streamAware {
		// The relay's readers are goroutines of their own (relay.Start).
		p.relay(s, client, clientConn, backend, backendR, node, p.reconnect(s, req, re, up.resp.Header.Get(httpstream.HeaderProtocolVersion)), stop)
		return
	}
	go p.spliceOpaque(s, client, clientConn, backend, backendR)
}

// spliceOpaque copies bytes both ways until the session ends, and ends s.
func (p *Proxy) spliceOpaque(s *session.Session, client io.ReadWriter, clientConn io.Closer, backend net.Conn, backendR io.Reader) {
	var reason string
	defer p.endSession(s, clientConn, backend, &reason)
	if err := splice(client, clientConn, backend, backendR, s.Protocol != metrics.ProtocolWebSocketLegacy, s.AddUp, s.AddDown); err != nil {
		reason = err.Error()
	}
}

// endSession, deferred where a session's splice ends, closes the kubelet
// connection and ends s with *reason. The filters' panic recovery covered
// the handler's goroutine, not the session's: a panic there ends this
// session, not the gateway.
func (p *Proxy) endSession(s *session.Session, clientConn io.Closer, backend net.Conn, reason *string) {
	if v := recover(); v != nil {
		p.panicked(s, v, debug.Stack())
		_ = clientConn.Close()
		*reason = fmt.Sprintf("internal error: %v", v)
	}
	_ = backend.Close()
	s.End(metrics.OutcomeCompleted, *reason)
}

func (p *Proxy) panicked(s *session.Session, v any, stack []byte) {
	klog.ErrorS(nil, "Panic in a port-forward session", "panic", v, "stack", string(stack),
		"user", s.User, "cluster", s.Cluster, "namespace", s.Namespace, "pod", s.Pod)
}

// relay starts the stream-aware splice; it ends s, with why the session
// ended, when the relay is over.
func (p *Proxy) relay(s *session.Session, client io.ReadWriter, clientConn io.Closer, backend net.Conn, backendR io.Reader, node string, rc relay.Reconnect, stop *relay.Stopper) {
	clientSide := relay.Conn{R: client, W: countingWriter{client, s.AddDown}, Close: clientConn.Close, Idle: idleOf(clientConn)}
	if d, ok := clientConn.(interface{ SetWriteDeadline(time.Time) error }); ok {
		clientSide.SetWriteDeadline = d.SetWriteDeadline
	}
	relay.Start(clientSide, kubeletSide(s, backend, backendR, node), relay.Options{
		Reconnect:           rc,
		EarlyReply:          p.Streams.EarlyReply,
		CreationTimeout:     p.Streams.CreationTimeout,
		MaxStreams:          p.Streams.MaxStreams,
		Decide:              s.Decide, // per session: it knows the caller and the pod
		Record:              s.Forwarded,
		Payload:             s.TrackPayload(),
		KubeletPingInterval: p.Liveness.KubeletPingInterval,
		KubeletPingTimeout:  p.Liveness.KubeletPingTimeout,
		Stop:                stop,
	}, func(end relay.End) {
		var reason string
		defer p.endSession(s, clientConn, backend, &reason)
		if end.KubeletLosses > 0 {
			klog.InfoS("Session outlived its kubelet connections", "sessionID", s.ID, "lost", end.KubeletLosses, "reconnects", end.Reconnects)
		}
		switch {
		case end.Panic != nil:
			p.panicked(s, end.Panic, end.Stack)
			reason = fmt.Sprintf("internal error: %v", end.Panic)
		case end.Err != nil:
			reason = fmt.Sprintf("%s connection: %v", end.By, end.Err)
		case end.Protocol:
			reason = fmt.Sprintf("%s sent a malformed frame", end.By)
		}
	})
}

// fail answers with a Status for err and ends the session.
func (p *Proxy) fail(w http.ResponseWriter, req *http.Request, s *session.Session, node string, err error) {
	var be *BackendError
	var st error
	switch {
	case errors.As(err, &be) && be.Internal:
		st = apierrors.NewInternalError(err)
	case errors.As(err, &be) && be.Reason == metrics.ReasonTimeout:
		st = apierrors.NewTimeoutError(fmt.Sprintf("timed out waiting for the kubelet on node %q: %v", node, err), 0)
	case errors.As(err, &be):
		st = apierrors.NewServiceUnavailable(fmt.Sprintf("error connecting to the kubelet on node %q: %v", node, err))
	default:
		st = apierrors.NewInternalError(err)
	}
	if be != nil {
		p.Metrics.BackendError(s.Cluster, be.Reason)
	}
	klog.V(2).InfoS("Kubelet upgrade failed", "sessionID", s.ID, "node", node, "err", err)
	status.Write(w, req, st)
	s.End(metrics.OutcomeBackendError, err.Error())
}

// passError relays a kubelet's error answer (≥400) to the client, as the
// API server does; any other non-101 answer is an invalid upgrade response.
func (p *Proxy) passError(w http.ResponseWriter, req *http.Request, s *session.Session, node string, up *upgraded) {
	code := up.resp.StatusCode
	if code < http.StatusBadRequest {
		// The API server's upgrade-aware proxy answers this with a plain
		// error, hence a 500 InternalError, not a 503.
		p.fail(w, req, s, node, &BackendError{Reason: metrics.ReasonBadResponse, Internal: true,
			Err: fmt.Errorf("invalid upgrade response: status code %d", code)})
		return
	}
	p.Metrics.BackendError(s.Cluster, metrics.ReasonErrorStatus)
	for k, vs := range up.resp.Header {
		if isHopByHop(k) {
			continue
		}
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(code)
	_, _ = io.Copy(w, up.resp.Body)
	s.End(metrics.OutcomeBackendRefused, fmt.Sprintf("kubelet on node %q answered %s", node, up.resp.Status))
}

func isHopByHop(h string) bool {
	switch http.CanonicalHeaderKey(h) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te", "Trailer", "Content-Length":
		return true
	}
	return false
}

// upgradedTo checks the kubelet switched to the protocol the client needs.
func upgradedTo(resp *http.Response, p metrics.Protocol) bool {
	if !strings.Contains(strings.ToLower(resp.Header.Get(httpstream.HeaderConnection)), "upgrade") {
		return false
	}
	want := strings.ToLower(spdy.HeaderSpdy31)
	if p == metrics.ProtocolWebSocketLegacy {
		want = "websocket"
	}
	return strings.Contains(strings.ToLower(resp.Header.Get(httpstream.HeaderUpgrade)), want)
}

// clientReader reads first what the HTTP server buffered after the request.
func clientReader(conn net.Conn, br *bufio.Reader) io.Reader {
	if n := br.Buffered(); n > 0 {
		return io.MultiReader(io.LimitReader(br, int64(n)), conn)
	}
	return conn
}

// kubeletSide is the relay's side for a kubelet connection read through r
// (upgraded.body), for the first one and for replacements alike.
func kubeletSide(s *session.Session, conn net.Conn, r io.Reader, node string) relay.Conn {
	return relay.Conn{R: r, W: countingWriter{netconn.Writer(conn), s.AddUp}, Own: conn, Close: conn.Close,
		SetWriteDeadline: conn.SetWriteDeadline, Node: node, Idle: idleOf(conn)}
}

// idleOf is what the relay's idle reads wait on (relay.Conn.Idle): a TLS
// connection over a socket, or a tunnel over one; nil if none.
func idleOf(c any) relay.Idle {
	if wc, ok := c.(*wsConn); ok {
		if wc.idle == nil {
			return nil
		}
		return wc
	}
	if t := netconn.IdleOf(c); t != nil {
		return t
	}
	return nil
}

type readWriter struct {
	io.Reader
	io.Writer
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
