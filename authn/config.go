package authn

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/anonymous"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authentication/request/websocket"
	tokencache "k8s.io/apiserver/pkg/authentication/token/cache"
	tokenunion "k8s.io/apiserver/pkg/authentication/token/union"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/oidc"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/webhook"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// tokenReviewTimeout bounds one TokenReview call (retries included) so a
// slow API server cannot hold a caller's request open indefinitely.
const tokenReviewTimeout = 10 * time.Second

// Config says which authenticators run. Each is optional; they combine like
// the kube-apiserver's (pkg/kubeapiserver/authenticator): client certificate
// first, then bearer tokens (OIDC, then TokenReview), then anonymous.
type Config struct {
	// ClientCAFile enables client certificates (--client-ca-file).
	ClientCAFile string
	// TokenReview enables bearer tokens checked by TokenReview in the
	// target cluster (--authentication-token-webhook); nil is off.
	TokenReview authenticationv1client.AuthenticationV1Interface
	// TokenReviewCacheTTL caches TokenReview answers, successes and
	// failures alike (--authentication-token-webhook-cache-ttl); 0 is off.
	TokenReviewCacheTTL time.Duration
	// APIAudiences are the audiences tokens must be meant for
	// (--api-audiences); empty accepts any audience.
	APIAudiences authenticator.Audiences
	// OIDC enables OpenID Connect ID tokens; nil is off.
	OIDC *OIDC
	// Anonymous lets requests without credentials through as
	// system:anonymous (--anonymous-auth).
	Anonymous bool
}

// OIDC holds the legacy --oidc-* flags.
type OIDC struct {
	IssuerURL      string
	ClientID       string
	CAFile         string
	UsernameClaim  string
	UsernamePrefix string
	GroupsClaim    string
	GroupsPrefix   string
	SigningAlgs    []string
	RequiredClaims map[string]string
}

// Authenticator is the gateway's authenticator chain.
type Authenticator struct {
	authenticator.Request
	clientCert *ClientCert
	// stop ends the OIDC authenticator's discovery and key refresh.
	stop context.CancelFunc
}

// New builds the chain. Call Run to reload the client CA and to stop the
// OIDC key refresh when the gateway stops.
func New(c Config) (*Authenticator, error) {
	a := &Authenticator{stop: func() {}}
	var reqs []authenticator.Request
	if c.ClientCAFile != "" {
		cc, err := NewClientCert(c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		a.clientCert = cc
		reqs = append(reqs, cc)
	}

	var tokens []authenticator.Token
	if c.OIDC != nil {
		ctx, cancel := context.WithCancel(context.Background())
		t, err := newOIDC(ctx, *c.OIDC)
		if err != nil {
			cancel()
			return nil, err
		}
		a.stop = cancel
		tokens = append(tokens, authenticator.WrapAudienceAgnosticToken(c.APIAudiences, t))
	}
	if c.TokenReview != nil {
		t, err := webhook.NewFromInterface(c.TokenReview, c.APIAudiences, *webhook.DefaultRetryBackoff(), tokenReviewTimeout, noMetrics)
		if err != nil {
			a.stop()
			return nil, err
		}
		var tok authenticator.Token = quietToken{t}
		if c.TokenReviewCacheTTL > 0 {
			// Like the kube-apiserver's webhook: one TTL for successes and
			// failures, errors (an unreachable API server) not cached.
			tok = tokencache.New(tok, false, c.TokenReviewCacheTTL, c.TokenReviewCacheTTL)
		}
		tokens = append(tokens, tok)
	}
	if len(tokens) > 0 {
		tok := tokenunion.New(tokens...)
		// The bearer token authenticator removes the Authorization header,
		// the WebSocket one the token subprotocol, once a token is accepted,
		// so neither is relayed further.
		reqs = append(reqs, bearertoken.New(tok), websocket.NewProtocolAuthenticator(tok))
	}

	// Every authenticated user is in system:authenticated (the client
	// certificate authenticator already adds it; the adder does not repeat it).
	var chain authenticator.Request = group.NewAuthenticatedGroupAdder(union.New(reqs...))
	if c.Anonymous {
		// A credential that fails verification is an error, which ends the
		// union: only requests without credentials become anonymous.
		chain = union.NewFailOnError(chain, anonymous.NewAuthenticator(nil))
	}
	a.Request = chain
	return a, nil
}

// Run reloads the client CA until ctx ends, then stops the OIDC
// authenticator's background work.
func (a *Authenticator) Run(ctx context.Context) {
	defer a.stop()
	if a.clientCert != nil {
		a.clientCert.Run(ctx)
		return
	}
	<-ctx.Done()
}

// newOIDC builds the k8s.io/apiserver OIDC authenticator from the flags.
func newOIDC(ctx context.Context, o OIDC) (authenticator.Token, error) {
	jwt := jwtAuthenticator(o)
	opts := oidc.Options{JWTAuthenticator: jwt, SupportedSigningAlgs: o.SigningAlgs}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--oidc-ca-file: %w", err)
		}
		opts.JWTAuthenticator.Issuer.CertificateAuthority = string(pem)
		if opts.CAContentProvider, err = dynamiccertificates.NewStaticCAContent("oidc-authenticator", pem); err != nil {
			return nil, fmt.Errorf("--oidc-ca-file: %w", err)
		}
	}
	t, err := oidc.New(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("--oidc-issuer-url: %w", err)
	}
	return t, nil
}

// jwtAuthenticator turns the legacy --oidc-* flags into an
// apiserver.JWTAuthenticator the way the kube-apiserver does
// (BuiltInAuthenticationOptions.ToAuthenticationConfig).
func jwtAuthenticator(o OIDC) apiserver.JWTAuthenticator {
	prefix := o.UsernamePrefix
	if prefix == "" && o.UsernameClaim != "email" {
		// Legacy behaviour: claims other than email are prefixed with the
		// issuer so that users of different issuers cannot collide.
		prefix = o.IssuerURL + "#"
	}
	if o.UsernamePrefix == "-" {
		prefix = ""
	}
	jwt := apiserver.JWTAuthenticator{
		Issuer: apiserver.Issuer{URL: o.IssuerURL, Audiences: []string{o.ClientID}},
		ClaimMappings: apiserver.ClaimMappings{
			Username: apiserver.PrefixedClaimOrExpression{Claim: o.UsernameClaim, Prefix: ptr.To(prefix)},
		},
	}
	if o.GroupsClaim != "" {
		jwt.ClaimMappings.Groups = apiserver.PrefixedClaimOrExpression{Claim: o.GroupsClaim, Prefix: ptr.To(o.GroupsPrefix)}
	}
	// Sorted, so the configuration does not depend on map order.
	for _, claim := range slices.Sorted(maps.Keys(o.RequiredClaims)) {
		jwt.ClaimValidationRules = append(jwt.ClaimValidationRules, apiserver.ClaimValidationRule{Claim: claim, RequiredValue: o.RequiredClaims[claim]})
	}
	return jwt
}

// quietToken hides a TokenReview call from client-go's logging: at -v=8
// and above client-go logs request and response bodies, and a TokenReview's
// body is the caller's token. Hand-written because neither the webhook nor
// client-go can be told to leave one request's body out; the webhook's own
// error log (no token in it) still reaches klog.
type quietToken struct{ authenticator.Token }

func (q quietToken) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	return q.Token.AuthenticateToken(klog.NewContext(ctx, logr.Discard()), token)
}

// noMetrics: the gateway does not export the webhook's request metrics.
var noMetrics = webhook.AuthenticatorMetrics{
	RecordRequestTotal:   func(context.Context, string) {},
	RecordRequestLatency: func(context.Context, string, float64) {},
}
