package e2e

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster/apiserver"
)

// l7Bytes is what each client kind moves each way through nginx.
const l7Bytes = 8 << 20

// forgedXFF is an X-Forwarded-For a client sends to nginx; the documented
// config replaces it, so it must never reach the audit log.
const forgedXFF = "203.0.113.9"

// nginxEnv is a gateway authenticating bearer tokens with the dev API
// server's TokenReview, behind nginx with the documented configuration.
type nginxEnv struct {
	*env
	ngx        *nginxProxy
	token      string
	cfg        *rest.Config // bob's client config for nginx: a token, no client certificate
	kubeconfig string
	auditLog   string
}

func newNginxEnv(t *testing.T) *nginxEnv {
	t.Helper()
	nginxBinary(t) // skip (or fail with CI=true) before starting anything
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	e := newEnv(t, func(o *options.Options) {
		o.Authn.TokenWebhook, o.Authn.TokenWebhookCacheTTL = true, time.Minute
		o.Audit.LogPath = auditLog
		// Under nginxTimeout, so the tunnel's pings alone keep it open.
		o.Liveness.WebSocketPingInterval = 2 * time.Second
	})
	n := &nginxEnv{env: e, ngx: startNginx(t, e), token: secret(t, "bob"), auditLog: auditLog}
	e.cluster.APIServer.SetTokens(map[string]apiserver.TokenUser{n.token: {Username: "bob", UID: "1001", Groups: []string{"ops"}}})
	n.cfg = &rest.Config{Host: "https://" + n.ngx.addr, BearerToken: n.token, TLSClientConfig: rest.TLSClientConfig{CAData: e.cluster.CA.CertPEM}}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["nginx"] = &clientcmdapi.Cluster{Server: n.cfg.Host, CertificateAuthorityData: e.cluster.CA.CertPEM}
	kc.AuthInfos["bob"] = &clientcmdapi.AuthInfo{Token: n.token}
	kc.Contexts["nginx"] = &clientcmdapi.Context{Cluster: "nginx", AuthInfo: "bob", Namespace: "default"}
	kc.CurrentContext = "nginx"
	n.kubeconfig = filepath.Join(t.TempDir(), "bob.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, n.kubeconfig); err != nil {
		t.Fatal(err)
	}
	// kubectlPortForward uses env's kubeconfig: point it at nginx.
	e.kubeconfig = n.kubeconfig
	return n
}

// pfURL is pod's portforward URL at nginx.
func (n *nginxEnv) pfURL(pod string) *url.URL {
	return &url.URL{Scheme: "https", Host: n.ngx.addr, Path: "/api/v1/namespaces/default/pods/" + pod + "/portforward"}
}

// legacySource is the address legacy sessions connect to nginx from.
const legacySource = "127.0.0.2"

// dialLegacy opens a legacy WebSocket session through nginx from
// legacySource, with bob's token and a forged X-Forwarded-For.
func (n *nginxEnv) dialLegacy(t *testing.T, subprotocol string) *legacyConn {
	t.Helper()
	u := n.pfURL("hash")
	u.Scheme = "wss"
	u.RawQuery = url.Values{"ports": {strconv.Itoa(hashPort)}}.Encode()
	// From 127.0.0.2: nginx reaches the gateway from 127.0.0.1, so the
	// audit can tell the client's address from nginx's.
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(legacySource)}, Timeout: 30 * time.Second}
	d := gwebsocket.Dialer{
		NetDialContext:  nd.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: n.cluster.CA.Pool()},
		Subprotocols:    []string{subprotocol}, HandshakeTimeout: 30 * time.Second,
		ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10,
	}
	h := http.Header{"Authorization": {"Bearer " + n.token}, "X-Forwarded-For": {forgedXFF}}
	ws, resp, err := d.Dial(u.String(), h)
	if err != nil {
		t.Fatalf("legacy WebSocket dial through nginx: %v (response %v)", err, resp)
	}
	if got := ws.Subprotocol(); got != subprotocol {
		_ = ws.Close()
		t.Fatalf("negotiated subprotocol %q through nginx, want %q", got, subprotocol)
	}
	ws.SetReadLimit(1 << 20)
	c := &legacyConn{ws: ws, base64: subprotocol == v4Base64, port: hashPort}
	c.prefix[0], c.prefix[1] = []byte{}, []byte{}
	return c
}

// TestNginxClientMatrix moves several MiB each way through nginx with every
// kind of client, authenticated by a bearer token, checks every byte and
// that the gateway served the client's own protocol (no silent fallback),
// then that the audit names bob and nginx's address, never the forged one.
func TestNginxClientMatrix(t *testing.T) {
	n := newNginxEnv(t)
	type open func(t *testing.T) (conn net.Conn, done func())
	viaForward := func(kind dialerKind) open {
		return func(t *testing.T) (net.Conn, func()) {
			f := startForward(t, dialer(t, kind, n.cfg, n.pfURL("hash")), hashPort)
			c, err := f.dial()
			if err != nil {
				t.Fatal(err)
			}
			return c, f.stop
		}
	}
	viaLegacy := func(sub string) open {
		return func(t *testing.T) (net.Conn, func()) {
			c := n.dialLegacy(t, sub)
			return c, func() {
				if !c.portsSeen() {
					t.Error("the server did not start both channels with the port")
				}
			}
		}
	}
	viaKubectl := func(minor int) open {
		return func(t *testing.T) (net.Conn, func()) {
			addr, run, err := n.kubectlPortForward(t, kubectlBinary(t, minor), "hash", hashPort)
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			return c, run.Kill
		}
	}
	tests := []struct {
		name     string
		open     open
		bytes    int64
		protocol string
	}{
		{"client-go SPDY dialer", viaForward(dialSPDY), l7Bytes, "spdy"},
		{"client-go WebSocket tunnel dialer", viaForward(dialTunnel), l7Bytes, "websocket"},
		{"client-go fallback dialer", viaForward(dialFallback), l7Bytes, "websocket"},
		{"legacy WebSocket v4.channel.k8s.io", viaLegacy(v4Binary), l7Bytes, "websocket_legacy"},
		{"legacy WebSocket v4.base64.channel.k8s.io", viaLegacy(v4Base64), min(l7Bytes, base64Bytes), "websocket_legacy"},
		{"kubectl 1.27", viaKubectl(27), l7Bytes, "spdy"},
		{"kubectl 1.33", viaKubectl(33), l7Bytes, "websocket"},
	}
	sessions := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := n.scrape(t).value(mSessions, labels{"protocol": tt.protocol, "outcome": "completed"})
			conn, done := tt.open(t)
			res, err := transfer(t, conn, tt.bytes, tt.bytes)
			_ = conn.Close()
			done()
			if err != nil {
				return
			}
			t.Logf("%s through nginx: %d MiB each way in %v: %.1f MiB/s (both directions)", tt.name, tt.bytes>>20, res.Elapsed.Round(time.Millisecond), res.MiBps())
			n.waitSessions(t, tt.protocol, "completed", before+1)
			n.waitIdle(t)
			sessions++
		})
	}
	if err := n.shutdown(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Every session's record names bob, and its sourceIPs are what nginx
	// saw (X-Forwarded-For) then nginx's own address, and nothing the client
	// made up. Both are 127.0.0.1 for most clients, which SourceIPs reports
	// once; legacy sessions come from legacySource.
	var users []string
	for _, ev := range readAuditLog(t, n.auditLog) {
		if ev.Stage != "ResponseComplete" || ev.ObjectRef == nil || ev.ObjectRef.Subresource != "portforward" {
			continue
		}
		users = append(users, ev.User.Username)
		want := "127.0.0.1"
		if ev.Annotations["pfgateway.io/protocol"] == "websocket_legacy" {
			want = legacySource + ",127.0.0.1"
		}
		if got := strings.Join(ev.SourceIPs, ","); got != want {
			t.Errorf("audited %s session: sourceIPs %q, want %q (client as nginx saw it, then nginx)", ev.Annotations["pfgateway.io/protocol"], got, want)
		}
	}
	if len(users) < sessions || slices.ContainsFunc(users, func(u string) bool { return u != "bob" }) {
		t.Errorf("audited session users %q, want at least %d, all bob", users, sessions)
	}
}

// TestNginxHandshakes: refusals cross nginx as the gateway's Status JSON,
// nothing nginx (or a client through it) could put in a header is taken as
// an identity, and the protocol negotiation headers cross nginx both ways.
func TestNginxHandshakes(t *testing.T) {
	n := newNginxEnv(t)
	spdy := func(extra http.Header) http.Header {
		h := spdyUpgrade.Clone()
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	tests := []struct {
		name   string
		method string
		header http.Header
	}{
		{"bad token, SPDY", http.MethodPost, spdy(http.Header{"Authorization": {"Bearer " + secret(t, "wrong")}})},
		{"bad token, legacy WebSocket", http.MethodGet, func() http.Header {
			h := legacyUpgrade.Clone()
			h.Set("Authorization", "Bearer "+secret(t, "wrong"))
			return h
		}()},
		{"identity headers only", http.MethodPost, spdy(http.Header{
			"X-Remote-User": {"admin"}, "X-Remote-Group": {"system:masters"},
			"X-Forwarded-User": {"admin"}, "X-Forwarded-Groups": {"system:masters"}, "X-Auth-Request-User": {"admin"},
		})},
		{"no credentials", http.MethodPost, spdy(nil)},
		// Above nginx's default 8 KiB header buffers, within the
		// documented 32 KiB: reaches the gateway, whose Status comes back.
		{"20 KiB bad token", http.MethodPost, spdy(http.Header{"Authorization": {"Bearer " + strings.Repeat("x", 20<<10)}})},
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: n.cluster.CA.Pool()}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := n.pfURL("hash")
			if tt.method == http.MethodGet {
				u.RawQuery = "ports=" + strconv.Itoa(hashPort)
			}
			req, err := http.NewRequest(tt.method, u.String(), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = tt.header
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			var st metav1.Status
			if err := json.Unmarshal(body, &st); err != nil {
				t.Fatalf("%d %q: not a Status: %v", resp.StatusCode, body, err)
			}
			if resp.StatusCode != http.StatusUnauthorized || st.Kind != "Status" || st.Code != http.StatusUnauthorized ||
				st.Reason != metav1.StatusReasonUnauthorized || st.Message != "Unauthorized" ||
				resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("got %d %s %q; want the gateway's 401 Status, reason Unauthorized, message exactly \"Unauthorized\"",
					resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
		})
	}
	// No session was started by any of them.
	if got := n.scrape(t).value(mActive, nil); got != 0 {
		t.Errorf("%s = %v after refusals, want 0", mActive, got)
	}

	t.Run("SPDY negotiation", func(t *testing.T) {
		// An unknown version first: the gateway must see both values and
		// choose, and its choice must come back through nginx.
		req, err := http.NewRequest(http.MethodPost, n.pfURL("hash").String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = spdy(http.Header{"Authorization": {"Bearer " + n.token}})
		req.Header["X-Stream-Protocol-Version"] = []string{"portforward.k8s.io.v99", "portforward.k8s.io"}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "SPDY/3.1" ||
			resp.Header.Get("X-Stream-Protocol-Version") != "portforward.k8s.io" {
			t.Errorf("got %d %v; want 101, Upgrade SPDY/3.1, X-Stream-Protocol-Version portforward.k8s.io", resp.StatusCode, resp.Header)
		}
	})
	t.Run("WebSocket tunnel negotiation", func(t *testing.T) {
		u := n.pfURL("hash")
		u.Scheme = "wss"
		d := gwebsocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: n.cluster.CA.Pool()}, HandshakeTimeout: 30 * time.Second,
			Subprotocols: []string{"SPDY/3.1+portforward.k8s.io.v99", "SPDY/3.1+portforward.k8s.io"}}
		ws, resp, err := d.Dial(u.String(), http.Header{"Authorization": {"Bearer " + n.token}})
		if err != nil {
			t.Fatalf("tunnel handshake through nginx: %v (response %v)", err, resp)
		}
		defer ws.Close()
		if got := ws.Subprotocol(); got != "SPDY/3.1+portforward.k8s.io" {
			t.Errorf("negotiated %q through nginx, want SPDY/3.1+portforward.k8s.io", got)
		}
	})
}

// TestNginxIdleSessions holds SPDY and WebSocket-tunnel sessions idle for
// well over nginx's (shortened) proxy_read_timeout: client-go's SPDY pings
// and the gateway's WebSocket pings keep them open, and they then move data
// byte-exact. A legacy WebSocket session, which nobody pings, idle as long
// is closed by nginx: the control that shows the timeout is in force.
func TestNginxIdleSessions(t *testing.T) {
	n := newNginxEnv(t)
	const idle = nginxTimeout + 6*time.Second
	var conns []net.Conn
	for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
		f := startForward(t, dialer(t, kind, n.cfg, n.pfURL("hash")), hashPort)
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conns = append(conns, c)
	}
	legacy := n.dialLegacy(t, v4Binary)
	defer legacy.Close()
	start := time.Now()
	legacyEnd := make(chan error, 1)
	go func() {
		_ = legacy.SetReadDeadline(start.Add(idle + 30*time.Second))
		_, err := legacy.Read(make([]byte, 1))
		legacyEnd <- err
	}()
	select {
	case err := <-legacyEnd:
		after := time.Since(start)
		var ce *gwebsocket.CloseError
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || after < nginxTimeout-time.Second || errors.As(err, &ce) && ce.Code == gwebsocket.CloseNormalClosure {
			t.Errorf("legacy idle session: read ended after %v with %v; want the connection cut by nginx after its %v timeout", after.Round(time.Millisecond), err, nginxTimeout)
		} else {
			t.Logf("legacy idle session cut after %v: %v", after.Round(time.Millisecond), err)
		}
	case <-time.After(idle + 30*time.Second):
		t.Errorf("legacy idle session still open after %v", idle+30*time.Second)
	}
	if i := strings.Index(n.ngx.errorLog(), "timed out (110: Connection timed out) while proxying upgraded connection"); i < 0 {
		t.Errorf("nginx's error log does not show the idle timeout:\n%s", n.ngx.errorLog())
	} else {
		line := n.ngx.errorLog()[i:]
		t.Logf("nginx: %s", line[:strings.IndexByte(line+"\n", '\n')])
	}
	if rest := idle - time.Since(start); rest > 0 {
		time.Sleep(rest) // the idle period itself: no event to wait for
	}
	for i, c := range conns {
		if _, err := transfer(t, c, 1<<20, 1<<20); err != nil {
			t.Errorf("session %d after %v idle: %v", i, idle, err)
		}
	}
	if got := n.scrape(t).value(mActive, nil); got != 2 {
		t.Errorf("%s = %v, want the 2 idle sessions still live", mActive, got)
	}
}
