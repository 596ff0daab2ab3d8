package upgrade

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/pfgateway/pfgateway/metrics"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		name    string
		query   string
		want    []int32
		wantErr string
	}{
		{name: "should read one port", query: "ports=80", want: []int32{80}},
		{name: "should read a comma-separated list", query: "ports=80,443", want: []int32{80, 443}},
		{name: "should read repeated parameters", query: "ports=80&ports=443,8080", want: []int32{80, 443, 8080}},
		{name: "should skip empty items", query: "ports=80,,443,", want: []int32{80, 443}},
		{name: "should require ports", query: "", wantErr: `query parameter "ports" is required`},
		{name: "should require a non-empty value", query: "ports=", wantErr: `query parameter "ports" is required`},
		{name: "should refuse port 0", query: "ports=0", wantErr: `invalid port "0"`},
		{name: "should refuse a port above 65535", query: "ports=65536", wantErr: `invalid port "65536"`},
		{name: "should refuse a negative port", query: "ports=-1", wantErr: `invalid port "-1"`},
		{name: "should refuse text", query: "ports=http", wantErr: `invalid port "http"`},
		{name: "should truncate long input in the message", query: "ports=" + strings.Repeat("9", 100), wantErr: "…"},
		{name: "should bound the number of ports", query: "ports=" + strings.TrimSuffix(strings.Repeat("1,", MaxPorts+1), ","), wantErr: "too many ports"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParsePorts(q)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got err %v, want it to contain %q", err, tt.wantErr)
				}
				if !apierrors.IsBadRequest(err) {
					t.Fatalf("got %T, want a BadRequest Status", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"ports=80", "ports=80,443&ports=1", "ports=", "ports=%00", "ports=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		ports, err := ParsePorts(q)
		if err != nil {
			if !apierrors.IsBadRequest(err) {
				t.Fatalf("error is not a BadRequest Status: %v", err)
			}
			return
		}
		if len(ports) == 0 || len(ports) > MaxPorts {
			t.Fatalf("got %d ports", len(ports))
		}
		for _, p := range ports {
			if p < 1 || p > 65535 {
				t.Fatalf("port %d out of range", p)
			}
		}
	})
}

func TestDetectProtocol(t *testing.T) {
	ws := func(proto string) http.Header {
		h := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
		if proto != "" {
			h.Set("Sec-Websocket-Protocol", proto)
		}
		return h
	}
	tests := []struct {
		name    string
		header  http.Header
		want    metrics.Protocol
		wantErr string
	}{
		{name: "should detect SPDY", header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}}, want: metrics.ProtocolSPDY},
		{name: "should find upgrade anywhere in Connection, any case", header: http.Header{"Connection": {"keep-alive, UPGRADE"}, "Upgrade": {"spdy/3.1"}}, want: metrics.ProtocolSPDY},
		{name: "should detect the WebSocket tunnel", header: ws("SPDY/3.1+portforward.k8s.io"), want: metrics.ProtocolWebSocketTunnel},
		{name: "should detect the legacy channel protocol", header: ws("v4.channel.k8s.io"), want: metrics.ProtocolWebSocketLegacy},
		{name: "should treat a WebSocket without subprotocol as legacy", header: ws(""), want: metrics.ProtocolWebSocketLegacy},
		{name: "should refuse a plain request", header: http.Header{}, wantErr: "Upgrade request required"},
		{name: "should refuse an unknown upgrade", header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"h2c"}}, wantErr: "Upgrade request required"},
		{name: "should refuse a WebSocket without key", header: func() http.Header { h := ws(""); h.Del("Sec-Websocket-Key"); return h }(), wantErr: "invalid WebSocket handshake"},
		{name: "should refuse a WebSocket of another version", header: func() http.Header { h := ws(""); h.Set("Sec-Websocket-Version", "8"); return h }(), wantErr: "invalid WebSocket handshake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/api/v1/namespaces/default/pods/p/portforward", nil)
			req.Header = tt.header
			got, err := DetectProtocol(req)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !apierrors.IsBadRequest(err) {
					t.Fatalf("got %v, %v; want BadRequest containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestBackendRequestDropsCallerCredentials(t *testing.T) {
	target, _ := url.Parse("https://10.0.0.1:10250/portForward/default/p")
	for _, p := range []metrics.Protocol{metrics.ProtocolSPDY, metrics.ProtocolWebSocketTunnel, metrics.ProtocolWebSocketLegacy} {
		t.Run(string(p), func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/api/v1/namespaces/default/pods/p/portforward?ports=80", nil)
			req.RemoteAddr = "192.0.2.7:5555"
			req.Header = http.Header{
				"Authorization": {"Bearer secret"}, "Impersonate-User": {"admin"}, "Impersonate-Group": {"system:masters"},
				"Impersonate-Extra-Scopes": {"x"}, "X-Remote-User": {"admin"}, "X-Remote-Group": {"system:masters"},
				"Cookie": {"session=1"}, "Proxy-Authorization": {"Basic eA=="}, "X-Forwarded-For": {"198.51.100.1"},
				"Sec-Websocket-Protocol": {"SPDY/3.1+portforward.k8s.io"}, "X-Stream-Protocol-Version": {"portforward.k8s.io"},
			}
			out := backendRequest(req, p, target, []int32{80, 443})
			for k := range out.Header {
				switch http.CanonicalHeaderKey(k) {
				case "Authorization", "Cookie", "Proxy-Authorization":
					t.Errorf("credential header %s forwarded", k)
				}
				if strings.HasPrefix(k, "Impersonate-") || strings.HasPrefix(k, "X-Remote-") {
					t.Errorf("identity header %s forwarded", k)
				}
			}
			if got := out.Header.Get("X-Forwarded-For"); got != "198.51.100.1, 192.0.2.7" {
				t.Errorf("X-Forwarded-For = %q", got)
			}
			if p == metrics.ProtocolWebSocketLegacy {
				if out.Method != http.MethodGet || out.URL.RawQuery != "port=80&port=443" {
					t.Errorf("legacy request %s ?%s", out.Method, out.URL.RawQuery)
				}
			} else if out.Method != http.MethodPost || out.Header.Get("Upgrade") != "SPDY/3.1" || out.Header.Get("X-Stream-Protocol-Version") != "portforward.k8s.io" {
				t.Errorf("SPDY request %s %v", out.Method, out.Header)
			}
		})
	}
}
