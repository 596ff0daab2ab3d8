package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/hex"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster/apiserver"
	"github.com/pfgateway/pfgateway/devcluster/oidcissuer"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// sessionUser matches a session's log line and captures its user and groups.
var sessionUser = regexp.MustCompile(`"Port-forward session ended" sessionID="[0-9a-f]+" user="([^"]*)" groups=(\[[^\]]*\])`)

// secret returns a token unlikely to appear anywhere by chance, so a test
// can grep logs for it.
func secret(t *testing.T, prefix string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

// bearer is a client config for the gateway that authenticates with token
// only: no client certificate. An empty token sends no credentials at all.
func (e *env) bearer(token string) *rest.Config {
	return &rest.Config{Host: e.cfg.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: e.cluster.CA.CertPEM}}
}

// forwardAs port-forwards to pod hash with cfg through dialer kind,
// moves 256 KiB each way byte-exact, and ends the session.
func (e *env) forwardAs(t *testing.T, kind dialerKind, cfg *rest.Config) {
	t.Helper()
	f := startForward(t, dialer(t, kind, cfg, e.pfURL("", "hash")), hashPort)
	c, err := f.dial()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := transfer(t, c, 256<<10, 256<<10); err != nil {
		t.FailNow()
	}
	_ = c.Close()
	f.stop()
	e.waitIdle(t)
}

// sessionUsers returns "user groups" of every session log line so far.
func sessionUsers(logs string) []string {
	var out []string
	for _, m := range sessionUser.FindAllStringSubmatch(logs, -1) {
		out = append(out, m[1]+" "+m[2])
	}
	return out
}

// tokenReviews counts the TokenReviews the dev API server has received.
func (e *env) tokenReviews() int {
	n := 0
	for _, r := range e.cluster.APIServer.Requests() {
		if r.Method == http.MethodPost && r.Path == apiserver.TokenReviewPath {
			n++
		}
	}
	return n
}

// expectUnauthorized checks a raw request with header h (and no client
// certificate) gets the API server's 401 Status.
func (e *env) expectUnauthorized(t *testing.T, h http.Header) {
	t.Helper()
	r := e.raw(t, http.MethodPost, pf("hash"), h, false)
	expectStatus(t, r, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
	if r.status != nil && r.status.Message != "Unauthorized" {
		t.Errorf("message %q, want exactly the API server's %q", r.status.Message, "Unauthorized")
	}
}

func withBearer(h http.Header, token string) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	out.Set("Authorization", "Bearer "+token)
	return out
}

// TestTokenReviewAuthentication runs port-forwards authenticated by a bearer
// token that the target cluster's TokenReview accepts, and checks refusals,
// the cache, and that the token goes nowhere but the TokenReview.
func TestTokenReviewAuthentication(t *testing.T) {
	logs := captureLogs(t)
	e := newEnv(t, func(o *options.Options) {
		o.Authn.TokenWebhook = true
		o.Authn.TokenWebhookCacheTTL = time.Minute
	})
	token, unknown := secret(t, "bob"), secret(t, "unknown")
	e.cluster.APIServer.SetTokens(map[string]apiserver.TokenUser{token: {Username: "bob", UID: "1001", Groups: []string{"ops"}}})
	bob := e.bearer(token)

	// (a) client-go SPDY and WebSocket-tunnel port-forwards as bob.
	e.forwardAs(t, dialSPDY, bob)
	e.forwardAs(t, dialTunnel, bob)
	want := `bob ["ops","system:authenticated"]`
	if got := sessionUsers(logs.String()); len(got) != 2 || got[0] != want || got[1] != want {
		t.Errorf("session log users %q, want two of %q", got, want)
	}
	// (e) Both sessions, one TokenReview: the second was answered from the cache.
	if n := e.tokenReviews(); n != 1 {
		t.Errorf("%d TokenReviews for two sessions with one token, want 1 (cached for the TTL)", n)
	}

	// (b) An unknown token: 401 on the raw request, on client-go's dial, and
	// refusals are cached too.
	e.expectUnauthorized(t, withBearer(spdyUpgrade, unknown))
	conn, _, err := dialer(t, dialSPDY, e.bearer(unknown), e.pfURL("", "hash")).Dial(portforward.PortForwardProtocolV1Name)
	if err == nil {
		_ = conn.Close()
		t.Fatal("client-go dialed with an unknown token")
	}
	if !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("client-go error %q, want it to contain Unauthorized", err)
	}
	if n := e.tokenReviews(); n != 2 {
		t.Errorf("%d TokenReviews after the unknown token was tried twice, want 2 (the refusal cached)", n)
	}
	// (c) No credentials at all: 401, and no TokenReview.
	e.expectUnauthorized(t, spdyUpgrade)
	if n := e.tokenReviews(); n != 2 {
		t.Errorf("%d TokenReviews after a request without credentials, want still 2", n)
	}

	// The read-only relay as bob (kubectl's GET of the pod before the upgrade).
	cs, err := kubernetes.NewForConfig(bob)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Get(context.Background(), "hash", metav1.GetOptions{}); err != nil {
		t.Fatalf("GET pod through the gateway as bob: %v", err)
	}

	// (f) The token reached only the TokenReview: not the kubelet, not the
	// relayed API calls, not the logs.
	expectNoTokenLeaks(t, e, logs, token, unknown)
}

// expectNoTokenLeaks checks no request the kubelet or the API server got
// carried a caller credential header, that the relay reached the API server,
// and that the logs never contain tokens.
func expectNoTokenLeaks(t *testing.T, e *env, logs *syncBuffer, tokens ...string) {
	t.Helper()
	reqs := e.cluster.Kubelet.Requests()
	if len(reqs) == 0 {
		t.Error("the kubelet saw no request")
	}
	for _, r := range reqs {
		if leaked := leakedCredentials(r.Header); len(leaked) > 0 {
			t.Errorf("kubelet request %s %s carried caller credentials: %v", r.Method, r.URL, leaked)
		}
	}
	relayed := false
	for _, r := range e.cluster.APIServer.Requests() {
		// Impersonate-* are the gateway's own (the caller's identity, not a
		// credential; TestAuthorization checks their values); anything
		// else that could carry a credential must be absent, and no header
		// may contain a token.
		h := r.Header.Clone()
		for k := range h {
			if strings.HasPrefix(http.CanonicalHeaderKey(k), "Impersonate-") {
				h.Del(k)
			}
		}
		if leaked := leakedCredentials(h); len(leaked) > 0 {
			t.Errorf("API server request %s %s carried caller credentials: %v", r.Method, r.Path, leaked)
		}
		for k, vs := range r.Header {
			for _, tok := range tokens {
				if strings.Contains(strings.Join(vs, ","), tok) {
					t.Errorf("API server request %s %s carried a caller's token in %s", r.Method, r.Path, k)
				}
			}
		}
		relayed = relayed || strings.HasPrefix(r.Path, "/api/v1/namespaces/default/pods/hash")
	}
	if !relayed {
		t.Error("the API server never saw the relayed GET of pod hash")
	}
	out := logs.String()
	if !strings.Contains(out, "Port-forward session ended") {
		t.Fatal("no session log line captured: the log check below would prove nothing")
	}
	for _, tok := range tokens {
		if strings.Contains(out, tok) {
			t.Errorf("the gateway's log output contains a caller's token %q", tok)
		}
	}
}

// TestAnonymousAuthentication: without --anonymous-auth a request without
// credentials is refused (TestTokenReviewAuthentication); with it, it passes
// as system:anonymous, while a bad token is still refused.
func TestAnonymousAuthentication(t *testing.T) {
	logs := captureLogs(t)
	e := newEnv(t, func(o *options.Options) {
		o.Authn.Anonymous = true
		o.Authn.TokenWebhook = true
	})
	e.forwardAs(t, dialSPDY, e.bearer(""))
	if got, want := sessionUsers(logs.String()), `system:anonymous ["system:unauthenticated"]`; len(got) != 1 || got[0] != want {
		t.Errorf("session log users %q, want %q", got, want)
	}
	e.expectUnauthorized(t, withBearer(spdyUpgrade, "not-a-known-token"))
	// A client certificate still wins over anonymous.
	e.forwardAs(t, dialSPDY, e.cfg)
	if got := sessionUsers(logs.String()); len(got) != 2 || got[1] != `alice ["devs","system:authenticated"]` {
		t.Errorf("session log users %q, want alice second", got)
	}
}

// TestOIDCAuthentication runs an OIDC issuer (discovery and JWKS over HTTPS
// with its own CA) and port-forwards with ID tokens it signed.
func TestOIDCAuthentication(t *testing.T) {
	logs := captureLogs(t)
	ca, err := pki.NewCA("oidc-ca")
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := ca.WriteFile(t.TempDir(), "oidc-ca")
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(pki.Loopback("issuer"))
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := oidcissuer.Start(&tls.Config{Certificates: []tls.Certificate{serving.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = issuer.Close() })
	e := newEnv(t, func(o *options.Options) {
		c := &o.Authn.OIDC
		c.IssuerURL, c.ClientID, c.CAFile = issuer.URL, "pfgateway", caFile
		c.UsernameClaim, c.UsernamePrefix = "email", "oidc:"
		c.GroupsClaim, c.GroupsPrefix = "groups", "idp:"
		c.RequiredClaims = map[string]string{"hd": "example.com"}
	})

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idToken := func(mutate func(map[string]any), forge bool) string {
		c := issuer.Claims("u-1234", "pfgateway", time.Hour)
		c["email"], c["groups"], c["hd"] = "dave@example.com", []string{"admins", "devs"}, "example.com"
		if mutate != nil {
			mutate(c)
		}
		tok, err := issuer.Sign(c)
		if forge {
			tok, err = oidcissuer.SignWith(other, c)
		}
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := idToken(nil, false)

	// The authenticator discovers the issuer in the background: wait until
	// it accepts the valid token on the read-only relay.
	eventually(t, 20*time.Second, "the OIDC authenticator to accept a valid ID token", func() bool {
		return e.raw(t, http.MethodGet, "/api/v1/namespaces/default/pods/hash", withBearer(nil, valid), false).code == http.StatusOK
	})
	e.forwardAs(t, dialSPDY, e.bearer(valid))
	if got, want := sessionUsers(logs.String()), `oidc:dave@example.com ["idp:admins","idp:devs","system:authenticated"]`; len(got) != 1 || got[0] != want {
		t.Errorf("session log users %q, want %q", got, want)
	}

	refused := map[string]string{
		"wrong audience":        idToken(func(c map[string]any) { c["aud"] = "someone-else" }, false),
		"expired":               idToken(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }, false),
		"bad signature":         idToken(nil, true),
		"another issuer":        idToken(func(c map[string]any) { c["iss"] = "https://evil.example" }, false),
		"required claim absent": idToken(func(c map[string]any) { delete(c, "hd") }, false),
	}
	var tokens []string
	for name, tok := range refused {
		t.Run(name, func(t *testing.T) { e.expectUnauthorized(t, withBearer(spdyUpgrade, tok)) })
		tokens = append(tokens, tok)
	}
	expectNoTokenLeaks(t, e, logs, append(tokens, valid)...)
	if n := e.tokenReviews(); n != 0 {
		t.Errorf("%d TokenReviews without --authentication-token-webhook, want 0", n)
	}
}

// TestAPIAudiences: with --api-audiences the gateway asks TokenReview for
// its own audience, so a token meant for the API server is refused and one
// meant for the gateway is accepted.
func TestAPIAudiences(t *testing.T) {
	logs := captureLogs(t)
	e := newEnv(t, func(o *options.Options) {
		o.Authn.TokenWebhook = true
		o.Authn.APIAudiences = []string{"pfgateway"}
	})
	forAPIServer, forGateway := secret(t, "apiserver"), secret(t, "gateway")
	e.cluster.APIServer.SetTokens(map[string]apiserver.TokenUser{
		forAPIServer: {Username: "erin"},
		forGateway:   {Username: "frank", Audiences: []string{"pfgateway", "vault"}},
	})
	e.expectUnauthorized(t, withBearer(spdyUpgrade, forAPIServer))
	e.forwardAs(t, dialSPDY, e.bearer(forGateway))
	if got, want := sessionUsers(logs.String()), `frank ["system:authenticated"]`; len(got) != 1 || got[0] != want {
		t.Errorf("session log users %q, want %q", got, want)
	}
	if n := e.tokenReviews(); n != 2 {
		t.Errorf("%d TokenReviews, want 2", n)
	}
}

// TestTokensNotLoggedAtHighVerbosity: at -v=8 and above client-go logs
// request and response bodies, and a TokenReview's body is the caller's
// token; the gateway must keep it out of the log all the same.
func TestTokensNotLoggedAtHighVerbosity(t *testing.T) {
	logs := captureLogs(t)
	var v klog.Level
	if err := v.Set("10"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Set("0") })
	e := newEnv(t, func(o *options.Options) { o.Authn.TokenWebhook = true })
	token, unknown := secret(t, "verbose"), secret(t, "unknown")
	e.cluster.APIServer.SetTokens(map[string]apiserver.TokenUser{token: {Username: "gina"}})
	e.forwardAs(t, dialSPDY, e.bearer(token))
	e.expectUnauthorized(t, withBearer(spdyUpgrade, unknown))
	if !strings.Contains(logs.String(), "Request Body") {
		t.Fatal("no request body logged at -v=10: the check below would prove nothing")
	}
	if n := e.tokenReviews(); n != 2 {
		t.Errorf("%d TokenReviews, want 2", n)
	}
	expectNoTokenLeaks(t, e, logs, token, unknown)
}
