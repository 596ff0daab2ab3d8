// Package oidcissuer is a minimal OpenID Connect issuer for tests and the
// demo: it serves a discovery document and its signing key (JWKS) over
// HTTPS on loopback and signs ID tokens with RS256.
package oidcissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	jose "gopkg.in/go-jose/go-jose.v2"
)

// KeyID names the issuer's one signing key.
const KeyID = "dev-key-1"

// Issuer is a running OIDC issuer.
type Issuer struct {
	// URL is the issuer URL (the iss claim), https://127.0.0.1:PORT.
	URL    string
	key    *rsa.PrivateKey
	srv    *http.Server
	served chan struct{}
}

// Start serves on 127.0.0.1 at a free port with tlsConfig, which must
// hold a certificate valid for 127.0.0.1.
func Start(tlsConfig *tls.Config) (*Issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	is := &Issuer{URL: "https://" + ln.Addr().String(), key: key, served: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", is.discovery)
	mux.HandleFunc("GET /keys", is.keys)
	is.srv = &http.Server{Handler: mux, TLSConfig: tlsConfig.Clone(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(is.served)
		if err := is.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("oidc issuer stopped", "url", is.URL, "err", err)
		}
	}()
	return is, nil
}

// Close stops the server.
func (is *Issuer) Close() error {
	err := is.srv.Close()
	<-is.served
	return err
}

func (is *Issuer) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{
		"issuer":                                is.URL,
		"jwks_uri":                              is.URL + "/keys",
		"authorization_endpoint":                is.URL + "/authorize",
		"token_endpoint":                        is.URL + "/token",
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (is *Issuer) keys(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: KeyID, Algorithm: "RS256", Use: "sig"}}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Claims returns the usual claims of an ID token of this issuer for sub
// and audience, valid for ttl from now (negative ttl: already expired).
func (is *Issuer) Claims(sub, audience string, ttl time.Duration) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": is.URL, "sub": sub, "aud": audience,
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(ttl).Unix(),
	}
}

// Sign returns claims as a compact RS256 JWS signed by the issuer's key.
func (is *Issuer) Sign(claims map[string]any) (string, error) { return SignWith(is.key, claims) }

// SignWith signs claims with key under the issuer's key ID: with another
// key than the issuer's, a token whose signature does not verify.
func SignWith(key *rsa.PrivateKey, claims map[string]any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", KeyID))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return jws.CompactSerialize()
}
