package upgrade

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/netconn"
)

// fakeKubelet answers upgrade requests: paths under /redirect/ redirect,
// /big sends an oversized head, /hang never answers, anything else upgrades
// and sends "EXTRA" right after its 101.
func fakeKubelet(t *testing.T) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/redirect/same":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case r.URL.Path == "/redirect/other":
			http.Redirect(w, r, "https://127.0.0.2:1/ok", http.StatusFound)
		case r.URL.Path == "/redirect/loop":
			http.Redirect(w, r, "/redirect/loop", http.StatusFound)
		case r.URL.Path == "/redirect/moved":
			http.Redirect(w, r, "/ok", http.StatusMovedPermanently)
		case r.URL.Path == "/big":
			w.Header().Set("X-Big", strings.Repeat("x", maxResponseHeaderBytes))
			w.WriteHeader(http.StatusSwitchingProtocols)
		case r.URL.Path == "/hang":
			<-r.Context().Done()
		case r.URL.Path == "/resumed":
			w.Header().Set("X-Resumed", strconv.FormatBool(r.TLS.DidResume))
			w.WriteHeader(http.StatusOK)
		case r.URL.Path == "/notfound":
			http.Error(w, "pod not found", http.StatusNotFound)
		default:
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\nEXTRA"))
			_ = conn.Close()
		}
	}))
	srv.EnableHTTP2 = false
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestBackendDial(t *testing.T) {
	srv := fakeKubelet(t)
	tlsConfig := srv.Client().Transport.(*http.Transport).TLSClientConfig
	tests := []struct {
		name       string
		path       string
		follow     bool
		timeout    time.Duration
		wantStatus int
		wantReason metrics.BackendErrorReason
		wantErr    string
	}{
		{name: "should upgrade and keep the bytes after the head", path: "/ok", wantStatus: 101},
		{name: "should follow a same-host 302 when enabled", path: "/redirect/same", follow: true, wantStatus: 101},
		{name: "should return the 302 when following is off", path: "/redirect/same", wantStatus: 302},
		{name: "should not follow a 301", path: "/redirect/moved", follow: true, wantStatus: 301},
		{name: "should refuse a redirect to another host", path: "/redirect/other", follow: true, wantReason: metrics.ReasonRedirectRefused, wantErr: "another host"},
		{name: "should stop a redirect loop", path: "/redirect/loop", follow: true, wantReason: metrics.ReasonTooManyRedirects, wantErr: "stopped after 3 redirects"},
		{name: "should bound the response head", path: "/big", wantReason: metrics.ReasonBadResponse, wantErr: "larger than"},
		{name: "should time out a kubelet that never answers", path: "/hang", timeout: 300 * time.Millisecond, wantReason: metrics.ReasonTimeout},
		{name: "should pass an error answer with its body", path: "/notfound", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			b := NewBackend(BackendOptions{TLS: tlsConfig, DialTimeout: time.Second, UpgradeTimeout: timeout, FollowRedirects: tt.follow, MaxRedirects: 3})
			u, _ := url.Parse(srv.URL + tt.path)
			req := (&http.Request{Method: http.MethodPost, URL: u, Host: u.Host, Header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}}}).WithContext(context.Background())
			start := time.Now()
			up, err := b.dial(context.Background(), req)
			if tt.wantErr != "" || tt.wantReason != "" {
				var be *BackendError
				if !errors.As(err, &be) || be.Reason != tt.wantReason || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want %s error containing %q", err, tt.wantReason, tt.wantErr)
				}
				if time.Since(start) > timeout+2*time.Second {
					t.Fatalf("took %v", time.Since(start))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer up.conn.Close()
			if up.resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", up.resp.StatusCode, tt.wantStatus)
			}
			switch tt.wantStatus {
			case 101:
				if got := string(up.raw[up.headLen:]); got != "EXTRA" {
					t.Fatalf("bytes after the head %q, want EXTRA", got)
				}
				if !strings.HasPrefix(string(up.raw), "HTTP/1.1 101") {
					t.Fatalf("raw head %q", up.raw)
				}
				// The relay's kubelet writes join records (netconn.Writer).
				if _, ok := netconn.Writer(up.conn).(*tls.Conn); ok {
					t.Errorf("the kubelet connection (%T over %T) cannot join records", up.conn, up.conn.(*tls.Conn).NetConn())
				}
			case 404:
				body := make([]byte, 64)
				n, _ := up.resp.Body.Read(body)
				if !strings.Contains(string(body[:n]), "pod not found") {
					t.Fatalf("body %q", body[:n])
				}
			}
		})
	}
}

func TestBackendDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv := fakeKubelet(t)
	b := NewBackend(BackendOptions{TLS: srv.Client().Transport.(*http.Transport).TLSClientConfig, DialTimeout: time.Second, UpgradeTimeout: 5 * time.Second})
	u := &url.URL{Scheme: "https", Host: addr, Path: "/ok"}
	_, err = b.dial(context.Background(), (&http.Request{Method: "POST", URL: u, Host: addr, Header: http.Header{}}).WithContext(context.Background()))
	var be *BackendError
	if !errors.As(err, &be) || be.Reason != metrics.ReasonDial || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("got %v, want a dial error", err)
	}
}

func TestBackendRefusesUnknownKubeletCA(t *testing.T) {
	srv := fakeKubelet(t)
	// The dial timeout also bounds the TLS handshake: generous, so a loaded
	// machine still reaches the certificate check.
	b := NewBackend(BackendOptions{TLS: &tls12Config, DialTimeout: 30 * time.Second, UpgradeTimeout: 30 * time.Second})
	u, _ := url.Parse(srv.URL + "/ok")
	_, err := b.dial(context.Background(), (&http.Request{Method: "POST", URL: u, Host: u.Host, Header: http.Header{}}).WithContext(context.Background()))
	var be *BackendError
	if !errors.As(err, &be) || be.Reason != metrics.ReasonDial || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("got %v, want a certificate error", err)
	}
}

var tls12Config = tls.Config{MinVersion: tls.VersionTLS12}

// The second connection to a kubelet resumes the first one's TLS session.
func TestBackendResumesKubeletTLSSessions(t *testing.T) {
	srv := fakeKubelet(t)
	b := NewBackend(BackendOptions{TLS: srv.Client().Transport.(*http.Transport).TLSClientConfig, DialTimeout: 5 * time.Second, UpgradeTimeout: 5 * time.Second})
	u, _ := url.Parse(srv.URL + "/resumed")
	var got []string
	for range 3 {
		up, err := b.dial(context.Background(), (&http.Request{Method: "POST", URL: u, Host: u.Host, Header: http.Header{}}).WithContext(context.Background()))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, up.resp.Header.Get("X-Resumed"))
		// The TLS 1.3 ticket arrives after the handshake: read to the end
		// so the client has taken it.
		_, _ = io.Copy(io.Discard, up.resp.Body)
		_ = up.conn.Close()
	}
	if want := []string{"false", "true", "true"}; !slices.Equal(got, want) {
		t.Errorf("resumed per connection: %v, want %v", got, want)
	}
}
