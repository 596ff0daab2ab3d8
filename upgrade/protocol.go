package upgrade

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	gwebsocket "github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/pfgateway/pfgateway/metrics"
)

const (
	// tunnelPrefix marks SPDY carried inside WebSocket (KEP-4006).
	tunnelPrefix = "SPDY/3.1+"
	k8sSuffix    = ".k8s.io"
	// MaxPorts bounds the ports one legacy WebSocket request may name; each
	// port is two channels and one connection to the pod.
	MaxPorts = 64
)

// DetectProtocol classifies a port-forward request the way the API server's
// handler chain does: the WebSocket tunnel by subprotocol, any other
// WebSocket as the legacy channel protocol, and SPDY by its Upgrade header.
// Anything else is the API server's 400 "Upgrade request required".
func DetectProtocol(req *http.Request) (metrics.Protocol, error) {
	switch {
	case wsstream.IsWebSocketRequest(req):
		// Checked before the kubelet is dialed, so a bad handshake is a Status
		// and never costs a kubelet connection.
		if !httpstream.IsUpgradeRequest(req) || req.Header.Get("Sec-Websocket-Version") != "13" || req.Header.Get("Sec-Websocket-Key") == "" {
			return "", apierrors.NewBadRequest("invalid WebSocket handshake: Connection: Upgrade, Sec-WebSocket-Version: 13 and Sec-WebSocket-Key are required")
		}
		if wsstream.IsWebSocketRequestWithTunnelingProtocol(req) {
			return metrics.ProtocolWebSocketTunnel, nil
		}
		return metrics.ProtocolWebSocketLegacy, nil
	case httpstream.IsUpgradeRequest(req) && strings.EqualFold(req.Header.Get(httpstream.HeaderUpgrade), spdy.HeaderSpdy31):
		return metrics.ProtocolSPDY, nil
	}
	return "", apierrors.NewBadRequest("Upgrade request required")
}

// tunnelSPDYProtocols returns the SPDY protocols named by the WebSocket
// tunnel subprotocols, without the SPDY/3.1+ prefix.
func tunnelSPDYProtocols(req *http.Request) []string {
	var out []string
	for _, p := range gwebsocket.Subprotocols(req) {
		if strings.HasPrefix(p, tunnelPrefix) && strings.HasSuffix(p, k8sSuffix) {
			out = append(out, strings.TrimPrefix(p, tunnelPrefix))
		}
	}
	return out
}

// ParsePorts reads the legacy protocol's ports from a query: repeated
// `ports` parameters, each a comma-separated list, as the API server's
// Convert_Slice_string_To_Slice_int32 accepts them.
func ParsePorts(q url.Values) ([]int32, error) {
	raw := q["ports"]
	if len(raw) == 0 {
		return nil, apierrors.NewBadRequest(`query parameter "ports" is required`)
	}
	var ports []int32
	for _, v := range raw {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if len(ports) == MaxPorts {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("too many ports: at most %d may be forwarded in one request", MaxPorts))
			}
			p, err := strconv.ParseUint(s, 10, 16)
			if err != nil || p == 0 {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid port %q: must be an integer between 1 and 65535", truncate(s, 32)))
			}
			ports = append(ports, int32(p))
		}
	}
	if len(ports) == 0 {
		return nil, apierrors.NewBadRequest(`query parameter "ports" is required`)
	}
	return ports, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Headers copied to the kubelet request. An allow-list rather than a deny-list:
// whatever the client sends — Authorization, Impersonate-*, X-Remote-*,
// cookies — never reaches a kubelet unless it is named here.
var (
	spdyHeaders      = []string{"User-Agent"}
	websocketHeaders = []string{"User-Agent", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"}
)

// backendRequest builds the request pfgateway sends to the kubelet.
func backendRequest(req *http.Request, p metrics.Protocol, target *url.URL, ports []int32) *http.Request {
	u := *target
	h := http.Header{}
	method := http.MethodPost
	switch p {
	case metrics.ProtocolSPDY:
		copyHeaders(h, req.Header, spdyHeaders)
		h.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
		h.Set(httpstream.HeaderUpgrade, spdy.HeaderSpdy31)
		for _, v := range req.Header.Values(httpstream.HeaderProtocolVersion) {
			h.Add(httpstream.HeaderProtocolVersion, v)
		}
	case metrics.ProtocolWebSocketTunnel:
		// The kubelet speaks SPDY; the tunnel is unwrapped here, as in the API server.
		copyHeaders(h, req.Header, spdyHeaders)
		h.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
		h.Set(httpstream.HeaderUpgrade, spdy.HeaderSpdy31)
		for _, v := range tunnelSPDYProtocols(req) {
			h.Add(httpstream.HeaderProtocolVersion, v)
		}
	case metrics.ProtocolWebSocketLegacy:
		method = http.MethodGet
		copyHeaders(h, req.Header, websocketHeaders)
		h.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
		h.Set(httpstream.HeaderUpgrade, "websocket")
		q := url.Values{}
		for _, port := range ports {
			q.Add("port", strconv.Itoa(int(port))) // the kubelet reads port=, the API reads ports=
		}
		u.RawQuery = q.Encode()
	}
	copyHeaders(h, req.Header, []string{"X-Forwarded-For"})
	out := (&http.Request{Method: method, URL: &u, Host: u.Host, Header: h, RemoteAddr: req.RemoteAddr,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}).WithContext(req.Context())
	utilnet.AppendForwardedForHeader(out)
	return out
}

func copyHeaders(dst, src http.Header, names []string) {
	for _, n := range names {
		for _, v := range src.Values(n) {
			dst.Add(n, v)
		}
	}
}
