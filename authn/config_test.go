package authn

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/devcluster/apiserver"
	"github.com/pfgateway/pfgateway/devcluster/oidcissuer"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// fixture is a CA, a dev API server answering TokenReviews and an OIDC
// issuer, the three sources of identity New composes.
type fixture struct {
	caFile  string
	reviews *apiserver.Server
	issuer  *oidcissuer.Issuer
	alice   *pki.KeyPair
	// ID tokens: valid, for another audience, expired, badly signed.
	oidcOK, oidcWrongAu, oidcExpired, oidcForged string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := pki.NewCA("clients")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{}
	if f.caFile, err = ca.WriteFile(t.TempDir(), "ca"); err != nil {
		t.Fatal(err)
	}
	if f.alice, err = ca.Issue(pki.IssueOptions{CommonName: "alice", Organization: []string{"devs"}, Usage: pki.Client}); err != nil {
		t.Fatal(err)
	}
	f.reviews, err = apiserver.Start(apiserver.Options{Tokens: map[string]apiserver.TokenUser{
		"bob-token":      {Username: "bob", UID: "42", Groups: []string{"ops"}},
		"gateway-scoped": {Username: "carol", Audiences: []string{"pfgateway"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.reviews.Close() })
	serving, err := ca.Issue(pki.Loopback("issuer"))
	if err != nil {
		t.Fatal(err)
	}
	if f.issuer, err = oidcissuer.Start(&tls.Config{Certificates: []tls.Certificate{serving.TLS}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.issuer.Close() })

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(aud string, ttl time.Duration, forged bool) string {
		c := f.issuer.Claims("dave", aud, ttl)
		c["groups"] = []string{"admins"}
		tok, err := f.issuer.Sign(c)
		if forged {
			tok, err = oidcissuer.SignWith(other, c)
		}
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	f.oidcOK = sign("gw", time.Hour, false)
	f.oidcWrongAu = sign("someone-else", time.Hour, false)
	f.oidcExpired = sign("gw", -time.Minute, false)
	f.oidcForged = sign("gw", time.Hour, true)
	return f
}

// spec says which authenticators a case enables.
type spec struct {
	cert, tokenReview, oidc, anonymous bool
	audiences                          authenticator.Audiences
}

func (f *fixture) config(t *testing.T, s spec) Config {
	t.Helper()
	c := Config{Anonymous: s.anonymous, APIAudiences: s.audiences, TokenReviewCacheTTL: time.Minute}
	if s.cert {
		c.ClientCAFile = f.caFile
	}
	if s.tokenReview {
		cs, err := kubernetes.NewForConfig(&rest.Config{Host: f.reviews.URL()})
		if err != nil {
			t.Fatal(err)
		}
		c.TokenReview = cs.AuthenticationV1()
	}
	if s.oidc {
		c.OIDC = &OIDC{IssuerURL: f.issuer.URL, ClientID: "gw", CAFile: f.caFile, UsernameClaim: "sub", UsernamePrefix: "oidc:",
			GroupsClaim: "groups", GroupsPrefix: "oidc:", SigningAlgs: []string{"RS256"}}
	}
	return c
}

func TestNew(t *testing.T) {
	f := newFixture(t)
	all := spec{cert: true, tokenReview: true, oidc: true}
	allAnon := all
	allAnon.anonymous = true
	scoped := spec{tokenReview: true, audiences: authenticator.Audiences{"pfgateway"}}

	type want struct {
		ok     bool
		err    bool
		user   string
		groups []string
	}
	anonymous := want{ok: true, user: "system:anonymous", groups: []string{"system:unauthenticated"}}
	refused := want{err: true}
	tests := []struct {
		name   string
		config spec
		cert   bool
		bearer string
		ws     string // token sent as a WebSocket subprotocol
		want   want
	}{
		{name: "client certificate", config: all, cert: true, want: want{ok: true, user: "alice", groups: []string{"devs", "system:authenticated"}}},
		{name: "TokenReview token", config: all, bearer: "bob-token", want: want{ok: true, user: "bob", groups: []string{"ops", "system:authenticated"}}},
		{name: "TokenReview token as WebSocket subprotocol", config: all, ws: "bob-token", want: want{ok: true, user: "bob", groups: []string{"ops", "system:authenticated"}}},
		{name: "OIDC ID token with prefixes", config: all, bearer: f.oidcOK, want: want{ok: true, user: "oidc:dave", groups: []string{"oidc:admins", "system:authenticated"}}},
		{name: "unknown token", config: all, bearer: "nobody", want: refused},
		{name: "unknown token is not anonymous", config: allAnon, bearer: "nobody", want: refused},
		{name: "OIDC token for another audience", config: allAnon, bearer: f.oidcWrongAu, want: refused},
		{name: "expired OIDC token", config: allAnon, bearer: f.oidcExpired, want: refused},
		{name: "OIDC token with a bad signature", config: allAnon, bearer: f.oidcForged, want: refused},
		{name: "a valid certificate wins over a bad token", config: all, cert: true, bearer: "nobody", want: want{ok: true, user: "alice", groups: []string{"devs", "system:authenticated"}}},
		{name: "no credentials", config: all, want: want{}},
		{name: "no credentials with anonymous", config: allAnon, want: anonymous},
		{name: "nothing configured", config: spec{}, cert: true, bearer: "bob-token", want: want{}},
		{name: "only anonymous", config: spec{anonymous: true}, want: anonymous},
		{name: "token of the API server's audience with --api-audiences", config: scoped, bearer: "bob-token", want: refused},
		{name: "token of the gateway's audience", config: scoped, bearer: "gateway-scoped", want: want{ok: true, user: "carol", groups: []string{"system:authenticated"}}},
		{name: "certificate without a client CA", config: spec{tokenReview: true}, cert: true, want: want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(f.config(t, tt.config))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan struct{})
			go func() { a.Run(ctx); close(ran) }()
			defer func() { cancel(); <-ran }()
			if tt.config.oidc {
				waitOIDC(t, a, f.oidcOK)
			}

			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.TLS = &tls.ConnectionState{}
			if tt.cert {
				req.TLS.PeerCertificates = []*x509.Certificate{f.alice.TLS.Leaf}
			}
			if tt.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tt.bearer)
			}
			if tt.ws != "" {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Sec-WebSocket-Protocol", "base64url.bearer.authorization.k8s.io."+base64.RawURLEncoding.EncodeToString([]byte(tt.ws))+", v5.channel.k8s.io")
			}
			if len(tt.config.audiences) > 0 {
				// As the router's WithAuthentication does with --api-audiences.
				req = req.WithContext(authenticator.WithAudiences(req.Context(), tt.config.audiences))
			}
			resp, ok, err := a.AuthenticateRequest(req)
			if ok != tt.want.ok || (err != nil) != tt.want.err {
				t.Fatalf("ok=%v err=%v, want ok=%v err=%v", ok, err, tt.want.ok, tt.want.err)
			}
			if !ok {
				return
			}
			if got := resp.User; got.GetName() != tt.want.user || !slices.Equal(got.GetGroups(), tt.want.groups) {
				t.Fatalf("user %q groups %q, want %q %q", got.GetName(), got.GetGroups(), tt.want.user, tt.want.groups)
			}
			// Accepted credentials are not passed on.
			if h := req.Header.Get("Authorization"); tt.bearer != "" && tt.want.user != "alice" && h != "" {
				t.Errorf("Authorization header still set after authentication: %q", h)
			}
			if tt.ws != "" {
				if got := req.Header.Get("Sec-WebSocket-Protocol"); got != "v5.channel.k8s.io" {
					t.Errorf("Sec-WebSocket-Protocol after authentication = %q, want the token protocol removed", got)
				}
			}
		})
	}
}

// waitOIDC waits for the OIDC authenticator's asynchronous discovery.
func waitOIDC(t *testing.T, a *Authenticator, token string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if _, ok, _ := a.AuthenticateRequest(req); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the OIDC authenticator never accepted a valid token")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunStopsOIDC(t *testing.T) {
	f := newFixture(t)
	a, err := New(f.config(t, spec{oidc: true}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { a.Run(ctx); close(ran) }()
	waitOIDC(t, a, f.oidcOK)
	cancel()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestNewRefusesABadOIDCConfig(t *testing.T) {
	f := newFixture(t)
	c := f.config(t, spec{oidc: true})
	c.OIDC.IssuerURL = "http://insecure.example"
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "--oidc-issuer-url") {
		t.Fatalf("New = %v, want an error naming --oidc-issuer-url", err)
	}
	c = f.config(t, spec{cert: true})
	c.ClientCAFile = "/nonexistent"
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "--client-ca-file") {
		t.Fatalf("New = %v, want an error naming --client-ca-file", err)
	}
}
