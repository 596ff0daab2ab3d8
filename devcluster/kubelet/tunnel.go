package kubelet

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	clientpf "k8s.io/client-go/tools/portforward"
	pfserver "k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// A real kubelet does not speak SPDY-over-WebSocket: the API server
// translates it (k8s.io/apiserver/pkg/util/proxy/streamtunnel.go) and talks
// SPDY to the kubelet. This kubelet terminates the tunnel itself so that
// benchmarks can measure a direct client→kubelet WebSocket path without a
// proxy hop. Unlike the API server, which learns the negotiated protocol
// from the upstream's 101 response before upgrading the WebSocket, the
// protocol is negotiated here up front (there is only one), the WebSocket is
// upgraded, and the unmodified cri-streaming SPDY server then runs over the
// tunnel as if it had hijacked an HTTP connection.

// wsWriteBufferSize lets one io.Copy chunk (32 KiB) of SPDY data leave as a
// single WebSocket frame instead of gorilla's default 4 KiB fragments.
const wsWriteBufferSize = 32 << 10

// wsWriteBuffers lends write buffers only while a message is being written,
// so idle sessions hold none.
var wsWriteBuffers sync.Pool

// serveTunnel serves a SPDY/3.1+portforward.k8s.io WebSocket request.
func (k *Kubelet) serveTunnel(w http.ResponseWriter, r *http.Request, fwd pfserver.PortForwarder, podName, uid string) {
	wsProtocol, spdyProtocol := negotiateTunnel(r)
	if wsProtocol == "" {
		// The same refusal httpstream.Handshake gives a SPDY client.
		for _, p := range pfserver.SupportedProtocols {
			w.Header().Add(httpstream.HeaderAcceptedProtocolVersions, p)
		}
		http.Error(w, fmt.Sprintf("unable to upgrade: unable to negotiate protocol: client supports %v, server accepts %v",
			gwebsocket.Subprotocols(r), tunnelProtocols()), http.StatusForbidden)
		return
	}
	up := gwebsocket.Upgrader{
		CheckOrigin:     func(*http.Request) bool { return true },
		Subprotocols:    []string{wsProtocol},
		WriteBufferSize: wsWriteBufferSize,
		WriteBufferPool: &wsWriteBuffers,
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has replied with an HTTP error
	}
	conn := clientpf.NewTunnelingConnection("server", ws)
	defer conn.Close()

	tw := &tunnelResponseWriter{conn: conn}
	pfserver.ServePortForward(tw, spdyRequest(r, spdyProtocol), fwd, podName, uid, nil,
		k.opts.StreamIdleTimeout, k.opts.StreamCreationTimeout, pfserver.SupportedProtocols)
	tw.reportFailure(ws)
}

// negotiateTunnel picks the first WebSocket subprotocol the client offers
// whose SPDY protocol the port-forward server supports.
func negotiateTunnel(r *http.Request) (wsProtocol, spdyProtocol string) {
	for _, p := range gwebsocket.Subprotocols(r) {
		sp, ok := strings.CutPrefix(p, pfserver.WebsocketsSPDYTunnelingPrefix)
		if ok && slices.Contains(pfserver.SupportedProtocols, sp) {
			return p, sp
		}
	}
	return "", ""
}

func tunnelProtocols() []string {
	out := make([]string, 0, len(pfserver.SupportedProtocols))
	for _, p := range pfserver.SupportedProtocols {
		out = append(out, pfserver.WebsocketsSPDYTunnelingPrefix+p)
	}
	return out
}

// spdyRequest rewrites the WebSocket request into the SPDY upgrade request
// the streaming server expects, like the API server's createSPDYRequest.
func spdyRequest(r *http.Request, protocol string) *http.Request {
	c := r.Clone(r.Context())
	c.Method = http.MethodPost
	c.Body = http.NoBody
	for _, h := range []string{"Sec-Websocket-Protocol", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions"} {
		c.Header.Del(h)
	}
	c.Header.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	c.Header.Set(httpstream.HeaderUpgrade, spdy.HeaderSpdy31)
	c.Header.Set(httpstream.HeaderProtocolVersion, protocol)
	return c
}

var errTunnelUpgraded = errors.New("kubelet: WebSocket tunnel already upgraded; HTTP response body discarded")

// tunnelResponseWriter is what the SPDY upgrader sees instead of the
// HTTP connection. The WebSocket handshake has already answered the client,
// so the SPDY 101 status and headers (httpstream.Handshake adds
// X-Stream-Protocol-Version, spdy.UpgradeResponse adds Connection/Upgrade and
// calls WriteHeader(101)) are swallowed, and Hijack hands over the tunnel.
// A non-upgrade answer cannot happen after our own negotiation, but if the
// library ever gives one, its text is kept for a WebSocket close frame.
type tunnelResponseWriter struct {
	conn net.Conn

	mu       sync.Mutex
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
}

func (w *tunnelResponseWriter) Header() http.Header {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.header == nil {
		w.header = http.Header{}
	}
	return w.header
}

func (w *tunnelResponseWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status == 0 && !w.hijacked {
		w.status = code
	}
}

func (w *tunnelResponseWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Len() < 1024 {
		w.body.Write(p)
	}
	return 0, errTunnelUpgraded
}

// Hijack returns the tunnel. The bufio.Reader matters: spdystream's framer
// reads frame headers in 4-byte pieces, and without it each would be a
// separate call into the WebSocket reader. Reads of whole data frames
// bypass its buffer, so it adds no copy of payload.
func (w *tunnelResponseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.status != 0 && w.status != http.StatusSwitchingProtocols {
		return nil, nil, errors.New("kubelet: hijack after a non-upgrade response")
	}
	w.hijacked = true
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

// reportFailure closes the WebSocket with the library's error text when the
// SPDY upgrade never happened, so the client sees why.
func (w *tunnelResponseWriter) reportFailure(ws *gwebsocket.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hijacked {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf("%d %s", w.status, w.body.String()))
	if len(msg) > 120 { // control frame payload limit is 125 bytes
		msg = strings.ToValidUTF8(msg[:120], "")
	}
	_ = ws.WriteControl(gwebsocket.CloseMessage,
		gwebsocket.FormatCloseMessage(gwebsocket.CloseInternalServerErr, msg), time.Now().Add(time.Second))
}
