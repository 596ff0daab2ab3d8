package kubelet

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	clientpf "k8s.io/client-go/tools/portforward"

	"github.com/pfgateway/pfgateway/devcluster/pki"
)

func TestStartValidation(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(pki.Loopback("kubelet"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"no TLS", Options{}},
		{"no ClientCAs", Options{TLS: &tls.Config{Certificates: []tls.Certificate{srv.TLS}}}},
		{"bad addr", Options{TLS: &tls.Config{Certificates: []tls.Certificate{srv.TLS}, ClientCAs: ca.Pool()}, Addr: "256.0.0.1:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if k, err := Start(tc.o); err == nil {
				k.Close()
				t.Fatal("Start succeeded")
			}
		})
	}
}

// TestTLS: the handshake itself rejects clients without a certificate
// signed by ClientCAs; nothing reaches the handler.
func TestTLS(t *testing.T) {
	f := newFixture(t)
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.Issue(pki.IssueOptions{CommonName: "stranger", Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		max   uint16
	}{
		{"no cert TLS1.3", nil, tls.VersionTLS13},
		{"no cert TLS1.2", nil, tls.VersionTLS12},
		{"foreign CA", []tls.Certificate{stranger.TLS}, tls.VersionTLS13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.clientTLS(false)
			cfg.Certificates, cfg.MaxVersion = tc.certs, tc.max
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
			resp, err := c.Get(f.url("/portForward/default/demo").String())
			if err == nil {
				resp.Body.Close()
				t.Fatalf("request succeeded with status %d", resp.StatusCode)
			}
		})
	}
	cfg := f.clientTLS(false)
	cfg.MaxVersion = tls.VersionTLS11
	if _, err := tls.Dial("tcp", f.k.Addr(), cfg); err == nil {
		t.Error("TLS 1.1 handshake succeeded")
	}
	if n := len(f.k.Requests()); n != 0 {
		t.Errorf("%d requests recorded from rejected clients", n)
	}
	if host, port, _ := net.SplitHostPort(f.k.Addr()); host != "127.0.0.1" || port != strconv.Itoa(f.k.Port()) || f.k.Port() == 0 {
		t.Errorf("Addr %q, Port %d", f.k.Addr(), f.k.Port())
	}

	// ALPN: HTTP/2 is never negotiated, upgrades need HTTP/1.1.
	cfg = f.clientTLS(true)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	c, err := tls.Dial("tcp", f.k.Addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("ALPN negotiated %q", p)
	}
}

func TestRouting(t *testing.T) {
	f := newFixture(t)
	ws := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	withProto := func(p string) http.Header { h := ws.Clone(); h.Set("Sec-Websocket-Protocol", p); return h }
	for _, tc := range []struct {
		name, method, path string
		header             http.Header
		status             int
		body               string
	}{
		{"unknown pod", "GET", "/portForward/default/nope", nil, 404, "pod does not exist"},
		{"unknown namespace", "POST", "/portForward/other/demo", nil, 404, "pod does not exist"},
		{"uid mismatch", "GET", "/portForward/default/demo/uid-2", nil, 404, "pod not found"},
		{"no pod in path", "GET", "/portForward/default", nil, 404, ""},
		{"trailing slash", "GET", "/portForward/default/demo/", nil, 404, ""},
		{"too deep", "GET", "/portForward/default/demo/uid-1/x", nil, 404, ""},
		{"other path", "GET", "/healthz", nil, 404, ""},
		{"exec", "POST", "/exec/default/demo/c", nil, 404, ""},
		{"PUT", "PUT", "/portForward/default/demo", nil, 405, ""},
		{"DELETE with uid", "DELETE", "/portForward/default/demo/uid-1", nil, 405, ""},
		// Reached the streaming library: plain GET without upgrade headers.
		{"no upgrade", "GET", "/portForward/default/demo/uid-1", nil, 400, "X-Stream-Protocol-Version"},
		{"spdy bad protocol", "POST", "/portForward/default/demo", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"},
			"X-Stream-Protocol-Version": {"portforward.k8s.io.v9"}}, 403, "unable to negotiate protocol"},
		{"websocket no port", "GET", "/portForward/default/demo", withProto("v4.channel.k8s.io"), 400, `query parameter "port" is required`},
		{"websocket bad port", "GET", "/portForward/default/demo?port=http", withProto("v4.channel.k8s.io"), 400, "unable to parse"},
		{"websocket port 0", "GET", "/portForward/default/demo?port=0", withProto("v4.channel.k8s.io"), 400, "must be > 0"},
		{"bad port before pod lookup", "GET", "/portForward/default/nope?port=x", withProto("v4.channel.k8s.io"), 400, "unable to parse"},
		{"tunnel unknown protocol", "GET", "/portForward/default/demo", withProto("SPDY/3.1+other.k8s.io"), 403, "unable to negotiate protocol"},
		{"tunnel unknown pod", "GET", "/portForward/default/nope", withProto("SPDY/3.1+portforward.k8s.io"), 404, "pod does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, f.url("").String()+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := f.httpClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
				t.Errorf("got %d %q, want %d containing %q", resp.StatusCode, body, tc.status, tc.body)
			}
		})
	}
}

// TestRequestsRecorded: what a gateway sends is visible to tests, so they
// can assert that caller credentials stop at the gateway.
func TestRequestsRecorded(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest("GET", f.url("").String()+"/portForward/default/demo?port=1&x=%2F", nil)
	req.Header.Set("Authorization", "Bearer leaked")
	resp, err := f.httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	dialSession(t, spdyDialers[1].new(t, f, f.url("/portForward/default/demo/"+podUID))).Close()

	got := f.k.Requests()
	if len(got) != 2 {
		t.Fatalf("recorded %d requests: %+v", len(got), got)
	}
	if r := got[0]; r.Method != "GET" || r.URL != "/portForward/default/demo?port=1&x=%2F" || r.ClientCN != "gw" ||
		r.Header.Get("Authorization") != "Bearer leaked" {
		t.Errorf("first request recorded as %+v", r)
	}
	if r := got[1]; r.URL != "/portForward/default/demo/"+podUID || r.ClientCN != "gw" ||
		r.Header.Get("Sec-Websocket-Protocol") != "SPDY/3.1+portforward.k8s.io" || r.Header.Get("Authorization") != "" {
		t.Errorf("tunnel request recorded as %+v", r)
	}
	got[0].Header.Set("Authorization", "changed")
	if f.k.Requests()[0].Header.Get("Authorization") != "Bearer leaked" {
		t.Error("Requests returned the kubelet's own header map")
	}
}

func TestHandlerHook(t *testing.T) {
	f := newFixture(t)
	f.k.SetHandlerHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Query().Get("redirect") == "" {
			return false
		}
		http.Redirect(w, r, "https://elsewhere.invalid/", http.StatusFound)
		return true
	})
	c := f.httpClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, tc := range []struct {
		query  string
		status int
	}{{"redirect=1", 302}, {"", 400}} {
		resp, err := c.Get(f.url("").String() + "/portForward/default/demo?" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("query %q: status %d, want %d", tc.query, resp.StatusCode, tc.status)
		}
	}
	f.k.SetHandlerHook(nil)
	resp, err := c.Get(f.url("").String() + "/portForward/default/demo?redirect=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("hook removed: status %d", resp.StatusCode)
	}
	if n := len(f.k.Requests()); n != 3 {
		t.Errorf("recorded %d requests, want 3 (hooked ones too)", n)
	}
}

// TestCloseKillsSessions: Close tears down upgraded sessions mid-transfer,
// like a node dying, for every transport.
func TestCloseKillsSessions(t *testing.T) {
	type session struct {
		rw   io.ReadWriter
		done <-chan error // ForwardPorts' result, nil for the v4 client
	}
	open := map[string]func(t *testing.T, f *fixture) session{
		"websocket-v4": func(t *testing.T, f *fixture) session {
			c, _, err := dialV4(f, "/portForward/default/demo", echoPort, v4Protocols[0])
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return session{rw: c}
		},
	}
	for _, dk := range spdyDialers {
		open[dk.name] = func(t *testing.T, f *fixture) session {
			local, done := startForward(t, dk.new(t, f, f.url("/portForward/default/demo")), echoPort)
			c, err := net.Dial("tcp", local)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return session{rw: c, done: done}
		}
	}
	for name, openSession := range open {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			s := openSession(t, f)
			echoRoundTrip(t, s.rw, 64<<10)

			start := time.Now()
			if err := f.k.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Close took %v", d)
			}
			readErr := make(chan error, 1)
			go func() { _, err := s.rw.Read(make([]byte, 1)); readErr <- err }()
			select {
			case err := <-readErr:
				if err == nil {
					t.Error("read succeeded after Close")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("session still open after Close")
			}
			if s.done != nil {
				select {
				case err := <-s.done:
					if !errors.Is(err, clientpf.ErrLostConnectionToPod) {
						t.Errorf("ForwardPorts = %v, want ErrLostConnectionToPod", err)
					}
				case <-time.After(5 * time.Second):
					t.Error("ForwardPorts did not notice the kubelet died")
				}
			}
			if c, err := net.DialTimeout("tcp", f.k.Addr(), time.Second); err == nil {
				c.Close()
				t.Error("listener still accepting after Close")
			}
		})
	}
}
