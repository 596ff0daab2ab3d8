package upgrade

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	gwebsocket "github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pfgateway/pfgateway/metrics"
)

// fuzzHeader sets name to the lines of v, one header line each, so the
// fuzzer also tries repeated headers; an empty v leaves the header out.
func fuzzHeader(h http.Header, name, v string) {
	if v == "" {
		return
	}
	for _, line := range strings.Split(v, "\n") {
		h.Add(name, line)
	}
}

// FuzzDetectProtocol checks DetectProtocol's classification against an
// independent reading of the headers (gorilla's Subprotocols and plain
// string compares) instead of only checking that it does not panic.
func FuzzDetectProtocol(f *testing.F) {
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	// connection, upgrade, subprotocols, version, key, X-Stream-Protocol-Version
	seeds := [][6]string{
		// client-go's SPDY dialer (kubectl up to 1.30, and the fallback).
		{"Upgrade", "SPDY/3.1", "", "", "", "portforward.k8s.io"},
		// client-go's WebSocket tunnel (kubectl 1.31+, PortForwardWebsockets).
		{"Upgrade", "websocket", "SPDY/3.1+portforward.k8s.io", "13", key, ""},
		{"Upgrade", "websocket", "SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io", "13", key, ""},
		// The legacy channel protocol (API server's own WebSocket port-forward).
		{"Upgrade", "websocket", "v4.channel.k8s.io", "13", key, ""},
		{"Upgrade", "websocket", "portforward.k8s.io", "13", key, ""},
		{"keep-alive, Upgrade", "WebSocket", "", "13", key, ""},
		{"Upgrade", "websocket", "SPDY/3.1+portforward.k8s.io", "8", key, ""},
		{"Upgrade", "websocket", "SPDY/3.1+portforward.k8s.io", "13", "", ""},
		{"keep-alive", "websocket", "SPDY/3.1+portforward.k8s.io", "13", key, ""},
		{"Upgrade", "websocket", " SPDY/3.1+portforward.k8s.io ,", "13", key, ""},
		{"Upgrade", "websocket", "x\nSPDY/3.1+portforward.k8s.io", "13", key, ""},
		{"Upgrade", "websocket", "SPDY/3.1+", "13", key, ""},
		{"Upgrade", "spdy/3.1", "", "", "", ""},
		{"upgrade, HTTP2-Settings", "h2c", "", "", "", ""},
		{"", "SPDY/3.1", "", "", "", ""},
		{"Upgrade", "SPDY/3.1\nwebsocket", "", "", "", ""},
		{"", "", "", "", "", ""},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5])
	}
	f.Fuzz(func(t *testing.T, connection, upgrade, subprotocols, version, key, streamVersion string) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/namespaces/default/pods/p/portforward", nil)
		fuzzHeader(req.Header, "Connection", connection)
		fuzzHeader(req.Header, "Upgrade", upgrade)
		fuzzHeader(req.Header, "Sec-WebSocket-Protocol", subprotocols)
		fuzzHeader(req.Header, "Sec-WebSocket-Version", version)
		fuzzHeader(req.Header, "Sec-WebSocket-Key", key)
		fuzzHeader(req.Header, "X-Stream-Protocol-Version", streamVersion)

		got, err := DetectProtocol(req)

		// The independent reading. Only the first header line counts, as in
		// http.Header.Get, which the API server's checks use too.
		hasUpgrade := false
		for _, c := range req.Header.Values("Connection") {
			hasUpgrade = hasUpgrade || strings.Contains(strings.ToLower(c), "upgrade")
		}
		isWebSocket := hasUpgrade && strings.EqualFold(req.Header.Get("Upgrade"), "websocket")
		isSPDY := hasUpgrade && strings.EqualFold(req.Header.Get("Upgrade"), "SPDY/3.1")
		validWS := req.Header.Get("Sec-WebSocket-Version") == "13" && req.Header.Get("Sec-WebSocket-Key") != ""
		var tunnel []string
		for _, p := range gwebsocket.Subprotocols(req) {
			if strings.HasPrefix(p, "SPDY/3.1+") && strings.HasSuffix(p, ".k8s.io") {
				tunnel = append(tunnel, strings.TrimPrefix(p, "SPDY/3.1+"))
			}
		}

		if err != nil {
			var se *apierrors.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v is not a Status", err, err)
			}
			st := se.Status()
			if st.Code != http.StatusBadRequest || st.Reason != metav1.StatusReasonBadRequest || got != "" {
				t.Fatalf("got %q and Status %+v, want a 400 BadRequest only", got, st)
			}
			switch {
			case strings.HasPrefix(st.Message, "invalid WebSocket handshake"):
				if !isWebSocket || validWS {
					t.Fatalf("handshake refused: websocket=%v valid=%v, header %q", isWebSocket, validWS, req.Header)
				}
			case st.Message == "Upgrade request required":
				if isWebSocket || isSPDY {
					t.Fatalf("upgrade refused: websocket=%v spdy=%v, header %q", isWebSocket, isSPDY, req.Header)
				}
			default:
				t.Fatalf("unknown message %q", st.Message)
			}
			return
		}
		switch got {
		case metrics.ProtocolWebSocketTunnel:
			if !isWebSocket || !validWS || len(tunnel) == 0 {
				t.Fatalf("tunnel without a valid WebSocket handshake naming SPDY/3.1+*.k8s.io: header %q", req.Header)
			}
			// What the kubelet is asked for: the same protocols, unprefixed.
			if spdy := tunnelSPDYProtocols(req); strings.Join(spdy, ",") != strings.Join(tunnel, ",") {
				t.Fatalf("tunnelSPDYProtocols = %q, want %q", spdy, tunnel)
			}
		case metrics.ProtocolWebSocketLegacy:
			if !isWebSocket || !validWS || len(tunnel) != 0 {
				t.Fatalf("legacy WebSocket: websocket=%v valid=%v tunnel=%q, header %q", isWebSocket, validWS, tunnel, req.Header)
			}
		case metrics.ProtocolSPDY:
			if !isSPDY {
				t.Fatalf("SPDY without Connection: upgrade and Upgrade: SPDY/3.1: header %q", req.Header)
			}
		default:
			t.Fatalf("unknown protocol %q", got)
		}
	})
}
