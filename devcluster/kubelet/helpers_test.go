package kubelet

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	clientpf "k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/pfgateway/pfgateway/devcluster/pki"
)

const (
	echoPort    = 8080 // mapped to a live echo server
	refusedPort = 8081 // mapped to an address nobody listens on
	unknownPort = 9999 // not mapped at all
	podUID      = "uid-1"
)

// fixture is a kubelet with pod default/demo and a client certificate.
type fixture struct {
	k      *Kubelet
	ca     *pki.CA
	client *pki.KeyPair
}

func newFixture(t testing.TB, opts ...func(*Options)) *fixture {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(pki.Loopback("kubelet"))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Issue(pki.IssueOptions{CommonName: "gw", Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{TLS: &tls.Config{Certificates: []tls.Certificate{srv.TLS}, ClientCAs: ca.Pool()}}
	for _, opt := range opts {
		opt(&o)
	}
	k, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	k.SetPod(Pod{Namespace: "default", Name: "demo", UID: podUID, Ports: map[int32]string{
		echoPort:    startEcho(t),
		refusedPort: refusedAddr(t),
	}})
	return &fixture{k: k, ca: ca, client: cli}
}

func (f *fixture) url(path string) *url.URL {
	return &url.URL{Scheme: "https", Host: f.k.Addr(), Path: path}
}

func (f *fixture) restConfig() *rest.Config {
	return &rest.Config{Host: "https://" + f.k.Addr(), TLSClientConfig: rest.TLSClientConfig{
		CertData: f.client.CertPEM, KeyData: f.client.KeyPEM, CAData: f.ca.CertPEM,
	}}
}

func (f *fixture) clientTLS(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: f.ca.Pool(), ServerName: "127.0.0.1"}
	if withCert {
		c.Certificates = []tls.Certificate{f.client.TLS}
	}
	return c
}

func (f *fixture) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: f.clientTLS(true)}, Timeout: 10 * time.Second}
}

// dialerKind builds a client-go dialer for one of the two SPDY transports.
type dialerKind struct {
	name string
	new  func(t testing.TB, f *fixture, u *url.URL) httpstream.Dialer
}

var spdyDialers = []dialerKind{
	{"spdy", func(t testing.TB, f *fixture, u *url.URL) httpstream.Dialer {
		rt, up, err := spdy.RoundTripperFor(f.restConfig())
		if err != nil {
			t.Fatal(err)
		}
		return spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u)
	}},
	{"websocket-tunnel", func(t testing.TB, f *fixture, u *url.URL) httpstream.Dialer {
		d, err := clientpf.NewSPDYOverWebsocketDialer(u, f.restConfig())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}},
}

// startForward runs client-go's PortForwarder on 127.0.0.1:0 → remote and
// returns the local address and ForwardPorts' eventual result.
func startForward(t testing.TB, d httpstream.Dialer, remote int) (string, <-chan error) {
	t.Helper()
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := clientpf.NewOnAddresses(d, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(remote)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- pf.ForwardPorts() }()
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(stop) }) })
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("ForwardPorts: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("port forward not ready")
	}
	ports, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))), errc
}

// forwardError dials a session and returns forwardErrorOn's result.
func forwardError(t testing.TB, d httpstream.Dialer, port int) string {
	t.Helper()
	conn := dialSession(t, d)
	defer conn.Close()
	return forwardErrorOn(t, conn, port, 0)
}

func dialSession(t testing.TB, d httpstream.Dialer) httpstream.Connection {
	t.Helper()
	conn, proto, err := d.Dial(clientpf.PortForwardProtocolV1Name)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if proto != clientpf.PortForwardProtocolV1Name {
		conn.Close()
		t.Fatalf("negotiated %q", proto)
	}
	return conn
}

// forwardErrorOn opens one forwarded connection with raw streams, as
// client-go's handleConnection does, half-closes its data stream at once
// and returns the error stream's text ("" when the forward succeeded).
func forwardErrorOn(t testing.TB, conn httpstream.Connection, port, requestID int) string {
	t.Helper()
	h := http.Header{}
	h.Set("streamType", "error")
	h.Set("port", strconv.Itoa(port))
	h.Set("requestID", strconv.Itoa(requestID))
	es, err := conn.CreateStream(h)
	if err != nil {
		t.Fatal(err)
	}
	es.Close()
	h.Set("streamType", "data")
	ds, err := conn.CreateStream(h)
	if err == nil {
		defer ds.Reset()
		ds.Close()
	}
	// Otherwise the data stream was reset before its reply: cri-streaming
	// starts the forward before replying to the stream, so a fast failure
	// can beat the reply. The message is on the error stream regardless.
	return readWithin(t, es, 10*time.Second)
}

func readWithin(t testing.TB, r io.Reader, d time.Duration) string {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	c := make(chan res, 1)
	go func() { b, err := io.ReadAll(r); c <- res{b, err} }()
	select {
	case r := <-c:
		return string(r.b)
	case <-time.After(d):
		t.Fatal("timed out reading")
		return ""
	}
}

// startEcho serves TCP echo: it copies until EOF, then closes.
func startEcho(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c) //nolint:errcheck
			}()
		}
	}()
	return ln.Addr().String()
}

// refusedAddr returns a loopback address nobody listens on.
func refusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// echoRoundTrip writes n random bytes through rw to the echo server while
// reading n bytes back, and compares SHA-256 of both directions.
func echoRoundTrip(t testing.TB, rw io.ReadWriter, n int) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	werr := make(chan error, 1)
	go func() {
		var err error
		for off := 0; off < n && err == nil; off += 64 << 10 {
			_, err = rw.Write(data[off:min(off+64<<10, n)])
		}
		werr <- err
	}()
	h := sha256.New()
	if _, err := io.CopyN(h, rw, int64(n)); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if got, want := h.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		t.Fatalf("sha256 mismatch: got %x want %x", got, want)
	}
}

// v4Conn is a client of the legacy v4.channel.k8s.io / v4.base64.channel.k8s.io
// port-forward protocol for one port: channel 0 carries data, channel 1
// errors, and the first message on each is the port, 2 bytes little-endian.
type v4Conn struct {
	ws       *gwebsocket.Conn
	b64      bool
	port     uint16
	pending  []byte
	portSeen [2]bool
	errText  bytes.Buffer
	wmu      sync.Mutex
}

// v4ChunkSize bounds one message's payload. The server (wsstream on
// golang.org/x/net/websocket) treats every WebSocket frame as a message, so
// a message must never be fragmented: like client-go, the dialer's write
// buffer is sized to hold a whole message.
const v4ChunkSize = 32 << 10

func dialV4(f *fixture, path string, port int, protocol string) (*v4Conn, *http.Response, error) {
	d := gwebsocket.Dialer{TLSClientConfig: f.clientTLS(true), Subprotocols: []string{protocol}, HandshakeTimeout: 10 * time.Second,
		ReadBufferSize: 2*v4ChunkSize + 1024, WriteBufferSize: 2*v4ChunkSize + 1024}
	u := url.URL{Scheme: "wss", Host: f.k.Addr(), Path: path, RawQuery: "port=" + strconv.Itoa(port)}
	ws, resp, err := d.Dial(u.String(), nil)
	if err != nil {
		return nil, resp, err
	}
	if ws.Subprotocol() != protocol {
		ws.Close()
		return nil, resp, fmt.Errorf("negotiated %q", ws.Subprotocol())
	}
	ws.SetReadDeadline(time.Now().Add(60 * time.Second))
	return &v4Conn{ws: ws, b64: protocol == "v4.base64.channel.k8s.io", port: uint16(port)}, resp, nil
}

// next reads one message and returns its channel and payload.
func (c *v4Conn) next() (byte, []byte, error) {
	_, msg, err := c.ws.ReadMessage()
	if err != nil {
		return 0, nil, err
	}
	if len(msg) == 0 {
		return 0, nil, errors.New("empty message")
	}
	ch, payload := msg[0], msg[1:]
	if c.b64 {
		ch -= '0'
		if payload, err = base64.StdEncoding.DecodeString(string(payload)); err != nil {
			return 0, nil, err
		}
	}
	if ch > 1 {
		return 0, nil, fmt.Errorf("unexpected channel %d", ch)
	}
	if !c.portSeen[ch] {
		if len(payload) < 2 || binary.LittleEndian.Uint16(payload) != c.port {
			return 0, nil, fmt.Errorf("bad port prefix %v on channel %d", payload, ch)
		}
		c.portSeen[ch] = true
		payload = payload[2:]
	}
	return ch, payload, nil
}

func (c *v4Conn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		ch, payload, err := c.next()
		if err != nil {
			return 0, err
		}
		if ch == 1 {
			c.errText.Write(payload)
			continue
		}
		c.pending = payload
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *v4Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for off := 0; off < len(p); off += v4ChunkSize {
		chunk := p[off:min(off+v4ChunkSize, len(p))]
		typ, msg := gwebsocket.BinaryMessage, append([]byte{0}, chunk...)
		if c.b64 {
			typ, msg = gwebsocket.TextMessage, append([]byte{'0'}, base64.StdEncoding.EncodeToString(chunk)...)
		}
		if err := c.ws.WriteMessage(typ, msg); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

// errorText reads until the server closes the session and returns what
// arrived on the error channel.
func (c *v4Conn) errorText() string {
	c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := c.Read(make([]byte, 512)); err != nil {
			return c.errText.String()
		}
	}
}

func (c *v4Conn) Close() error { return c.ws.Close() }
