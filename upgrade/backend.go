package upgrade

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"k8s.io/apimachinery/pkg/util/proxy"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/netconn"
)

// maxResponseHeaderBytes bounds what a kubelet may send before its 101.
const maxResponseHeaderBytes = 64 << 10

// sessionCacheSize bounds the kubelet TLS sessions kept for resumption: one
// per kubelet host, the least recently used dropped first.
const sessionCacheSize = 1024

// errorBodyTimeout bounds reading the body of a kubelet's error answer.
const errorBodyTimeout = 10 * time.Second

// BackendOptions configure connections to kubelets.
type BackendOptions struct {
	// TLS carries the gateway's client certificate and the kubelet CA.
	TLS *tls.Config
	// DialTimeout bounds the TCP connect and the TLS handshake.
	DialTimeout time.Duration
	// KeepAlive is the TCP keepalive period of kubelet connections.
	KeepAlive time.Duration
	// UpgradeTimeout bounds the time from dialing to the kubelet's response headers.
	UpgradeTimeout time.Duration
	// FollowRedirects follows 302 answers from the kubelet to the same host.
	FollowRedirects bool
	// MaxRedirects bounds how many redirects are followed.
	MaxRedirects int
	// WrapRequest, when set, rewrites each request before it is sent: an
	// upstream API server backend adds the gateway's credentials and the
	// caller's impersonation headers there (package clusters).
	WrapRequest func(*http.Request) (*http.Request, error)
}

// Backend dials kubelets for upgrade requests.
type Backend struct {
	opts      BackendOptions
	transport *http.Transport // only a carrier of dialer and TLS config for proxy.DialURL
}

// NewBackend returns a Backend. The TLS config is cloned and forced to
// HTTP/1.1, since an HTTP/2 connection cannot carry an upgrade.
func NewBackend(o BackendOptions) *Backend {
	tc := o.TLS.Clone()
	tc.NextProtos = []string{"http/1.1"}
	if tc.MinVersion == 0 {
		tc.MinVersion = tls.VersionTLS12
	}
	if tc.ClientSessionCache == nil {
		// Resume TLS sessions with kubelets: a resumed handshake skips the
		// certificate messages and both signatures (less CPU and latency
		// per session), and the connection shares the cached session's
		// parsed certificates instead of keeping its own copy. crypto/tls
		// still checks the cached kubelet certificate's expiry and name
		// on resumption; the cache is per backend, bounded, and keyed by
		// kubelet host.
		tc.ClientSessionCache = tls.NewLRUClientSessionCache(sessionCacheSize)
	}
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: o.KeepAlive}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		// Under the TLS connection, so that netconn.Writer can join a
		// relayed frame's records into fewer system calls.
		return netconn.NewConn(c), nil
	}
	return &Backend{opts: o, transport: &http.Transport{DialContext: dial, TLSClientConfig: tc}}
}

// BackendError is a failure reaching or upgrading to a kubelet.
type BackendError struct {
	Reason metrics.BackendErrorReason
	Err    error
	// Internal marks failures the API server reports as 500 InternalError
	// rather than as an unavailable kubelet.
	Internal bool
}

func (e *BackendError) Error() string { return e.Err.Error() }
func (e *BackendError) Unwrap() error { return e.Err }

// upgraded is an open kubelet connection and what it answered.
type upgraded struct {
	conn net.Conn
	resp *http.Response
	// raw holds every byte read from conn so far: the response head and any
	// bytes the kubelet sent after it (the first SPDY frames, say).
	raw []byte
	// headLen is the length of the response head within raw.
	headLen int
}

// body reads what the kubelet sends after its 101: the bytes read with the
// head first, so that a frame that began there is relayed whole.
func (up *upgraded) body() io.Reader {
	if rest := up.raw[up.headLen:]; len(rest) > 0 {
		return io.MultiReader(bytes.NewReader(rest), up.conn)
	}
	return up.conn
}

// dial sends req to the kubelet and reads its response head, following
// same-host 302s when configured. apimachinery removed redirect following
// from its upgrade-aware proxy in v0.24, so this loop is our own.
func (b *Backend) dial(ctx context.Context, req *http.Request) (*upgraded, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.UpgradeTimeout)
	defer cancel()
	if b.opts.WrapRequest != nil {
		var err error
		if req, err = b.opts.WrapRequest(req); err != nil {
			return nil, &BackendError{Reason: metrics.ReasonBadResponse, Internal: true, Err: fmt.Errorf("preparing the upstream request: %w", err)}
		}
	}
	origin := req.URL
	for redirects := 0; ; redirects++ {
		up, err := b.roundTrip(ctx, req)
		if err != nil {
			return nil, err
		}
		if up.resp.StatusCode != http.StatusFound || !b.opts.FollowRedirects {
			return up, nil
		}
		_ = up.conn.Close()
		if redirects >= b.opts.MaxRedirects {
			return nil, &BackendError{Reason: metrics.ReasonTooManyRedirects, Err: fmt.Errorf("stopped after %d redirects", b.opts.MaxRedirects)}
		}
		loc, err := up.resp.Location()
		if err != nil {
			return nil, &BackendError{Reason: metrics.ReasonBadResponse, Err: fmt.Errorf("redirect without a valid Location: %v", err)}
		}
		if loc.Scheme != origin.Scheme || loc.Host != origin.Host {
			return nil, &BackendError{Reason: metrics.ReasonRedirectRefused, Err: fmt.Errorf("refusing to follow a redirect to another host (%s://%s)", loc.Scheme, loc.Host)}
		}
		next := req.Clone(req.Context())
		next.URL = loc
		next.Host = loc.Host
		req = next
	}
}

// roundTrip dials req.URL, writes req and reads the response head.
func (b *Backend) roundTrip(ctx context.Context, req *http.Request) (*upgraded, error) {
	// net.Dialer.Timeout bounds only the TCP connect; DialURL's TLS
	// handshake needs its own bound, or a kubelet that accepts and stays
	// silent holds the request for the whole UpgradeTimeout.
	dctx, dcancel := ctx, context.CancelFunc(func() {})
	if b.opts.DialTimeout > 0 {
		dctx, dcancel = context.WithTimeout(ctx, b.opts.DialTimeout)
	}
	conn, err := proxy.DialURL(dctx, req.URL, b.transport)
	dcancel()
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("error dialing backend: %w", err))
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if err := req.Write(conn); err != nil {
		_ = conn.Close()
		return nil, classify(ctx, fmt.Errorf("error sending request: %w", err))
	}
	var raw bytes.Buffer
	lim := &io.LimitedReader{R: conn, N: maxResponseHeaderBytes}
	br := bufio.NewReaderSize(io.TeeReader(lim, &raw), 4096)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		_ = conn.Close()
		if lim.N <= 0 {
			err = fmt.Errorf("response head larger than %d bytes", maxResponseHeaderBytes)
		}
		return nil, classify(ctx, fmt.Errorf("error reading upgrade response: %w", err))
	}
	if !stop() {
		_ = conn.Close()
		return nil, classify(ctx, ctx.Err())
	}
	up := &upgraded{conn: conn, resp: resp, raw: raw.Bytes()}
	up.headLen = len(up.raw) - br.Buffered()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		_ = conn.SetDeadline(time.Time{})
	} else {
		// An error answer is passed through: its body stays readable through
		// br, bounded by lim, and must arrive soon.
		_ = conn.SetDeadline(time.Now().Add(errorBodyTimeout))
	}
	return up, nil
}

func classify(ctx context.Context, err error) error {
	var ne net.Error
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &BackendError{Reason: metrics.ReasonTimeout, Err: err}
	}
	var ue *url.Error
	if errors.As(err, &ue) || isDial(err) {
		return &BackendError{Reason: metrics.ReasonDial, Err: err}
	}
	return &BackendError{Reason: metrics.ReasonBadResponse, Err: err}
}

func isDial(err error) bool {
	var oe *net.OpError
	var te *tls.CertificateVerificationError
	var re tls.RecordHeaderError
	return errors.As(err, &oe) || errors.As(err, &te) || errors.As(err, &re)
}
