package options

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/oidc"
	cliflag "k8s.io/component-base/cli/flag"

	"github.com/pfgateway/pfgateway/authn"
)

// AuthenticationOptions choose how callers are authenticated besides
// --client-ca-file. Names, defaults and meanings are the kube-apiserver's.
type AuthenticationOptions struct {
	Anonymous bool
	// TokenWebhook checks bearer tokens with TokenReview in the target
	// cluster, using the gateway's --kubeconfig credentials.
	TokenWebhook         bool
	TokenWebhookCacheTTL time.Duration
	APIAudiences         []string
	OIDC                 OIDCOptions
}

// OIDCOptions are the legacy --oidc-* flags: authn.OIDC, with flags and
// validation.
type OIDCOptions authn.OIDC

// NewAuthenticationOptions returns the defaults: no tokens, no anonymous.
func NewAuthenticationOptions() AuthenticationOptions {
	return AuthenticationOptions{
		TokenWebhookCacheTTL: 10 * time.Second,
		OIDC:                 OIDCOptions{UsernameClaim: "sub", SigningAlgs: []string{"RS256"}},
	}
}

// AddFlags registers the authentication flags on fs.
func (o *AuthenticationOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Anonymous, "anonymous-auth", o.Anonymous, "Let requests without credentials through as system:anonymous (group system:unauthenticated). A credential that fails verification is refused either way.")
	fs.BoolVar(&o.TokenWebhook, "authentication-token-webhook", o.TokenWebhook, "Authenticate bearer tokens with TokenReview in the target cluster, using the gateway's --kubeconfig credentials (needs create on tokenreviews).")
	fs.DurationVar(&o.TokenWebhookCacheTTL, "authentication-token-webhook-cache-ttl", o.TokenWebhookCacheTTL, "How long TokenReview answers, accepted or refused, are cached (0 disables the cache).")
	fs.StringSliceVar(&o.APIAudiences, "api-audiences", o.APIAudiences, "Audiences a bearer token must be meant for; empty accepts tokens of any audience the token authenticator accepts.")

	c := &o.OIDC
	fs.StringVar(&c.IssuerURL, "oidc-issuer-url", c.IssuerURL, "HTTPS URL of the OpenID Connect issuer whose ID tokens are accepted; its discovery document and keys are fetched from it.")
	fs.StringVar(&c.ClientID, "oidc-client-id", c.ClientID, "The client ID ID tokens must be issued for (their aud claim). Required with --oidc-issuer-url.")
	fs.StringVar(&c.CAFile, "oidc-ca-file", c.CAFile, "CA bundle that verifies the OpenID Connect issuer's serving certificate; empty uses the host's roots.")
	fs.StringVar(&c.UsernameClaim, "oidc-username-claim", c.UsernameClaim, "The ID token claim used as the user name.")
	fs.StringVar(&c.UsernamePrefix, "oidc-username-prefix", c.UsernamePrefix, "Prefix for user names; empty means \"<issuer-url>#\" unless the claim is email, \"-\" means none.")
	fs.StringVar(&c.GroupsClaim, "oidc-groups-claim", c.GroupsClaim, "The ID token claim (a string or an array of strings) used as the user's groups; empty means none.")
	fs.StringVar(&c.GroupsPrefix, "oidc-groups-prefix", c.GroupsPrefix, "Prefix for group names.")
	fs.StringSliceVar(&c.SigningAlgs, "oidc-signing-algs", c.SigningAlgs, "JOSE signing algorithms accepted for ID tokens.")
	fs.Var(cliflag.NewMapStringString(&c.RequiredClaims), "oidc-required-claim", "key=value pairs an ID token's claims must contain; repeat the flag for several.")
}

// Validate returns every problem, each naming its flag.
func (o *AuthenticationOptions) Validate() []error {
	var errs []error
	if o.TokenWebhookCacheTTL < 0 {
		errs = append(errs, fmt.Errorf("--authentication-token-webhook-cache-ttl must not be negative, got %v", o.TokenWebhookCacheTTL))
	}
	for _, a := range o.APIAudiences {
		if a == "" {
			errs = append(errs, fmt.Errorf("--api-audiences must not contain an empty audience"))
		}
	}
	return append(errs, o.OIDC.validate()...)
}

// Enabled is whether OIDC is configured.
func (c *OIDCOptions) Enabled() bool { return c.IssuerURL != "" }

func (c *OIDCOptions) validate() []error {
	def := NewAuthenticationOptions().OIDC
	set := c.IssuerURL != "" || c.ClientID != "" || c.CAFile != "" || c.UsernamePrefix != "" || c.GroupsClaim != "" ||
		c.GroupsPrefix != "" || len(c.RequiredClaims) > 0 || c.UsernameClaim != def.UsernameClaim || !slices.Equal(c.SigningAlgs, def.SigningAlgs)
	if !set {
		return nil
	}
	var errs []error
	if c.IssuerURL == "" || c.ClientID == "" {
		errs = append(errs, fmt.Errorf("--oidc-issuer-url and --oidc-client-id must be specified together when any --oidc-* flag is set"))
	}
	if c.IssuerURL != "" {
		u, err := url.Parse(c.IssuerURL)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("--oidc-issuer-url: %v", err))
		case u.Scheme != "https" || u.Host == "":
			errs = append(errs, fmt.Errorf("--oidc-issuer-url %q must be an https:// URL", c.IssuerURL))
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			errs = append(errs, fmt.Errorf("--oidc-issuer-url %q must not contain a user, query or fragment", c.IssuerURL))
		}
	}
	if c.CAFile != "" {
		if f, err := os.Open(c.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("--oidc-ca-file: %v", err))
		} else {
			_ = f.Close()
		}
	}
	if c.UsernameClaim == "" {
		errs = append(errs, fmt.Errorf("--oidc-username-claim must not be empty"))
	}
	if len(c.SigningAlgs) == 0 {
		errs = append(errs, fmt.Errorf("--oidc-signing-algs must name at least one algorithm"))
	}
	valid := oidc.AllValidSigningAlgorithms()
	for _, alg := range c.SigningAlgs {
		if !slices.Contains(valid, alg) {
			errs = append(errs, fmt.Errorf("--oidc-signing-algs: %q is not one of %v", alg, valid))
		}
	}
	for k := range c.RequiredClaims {
		if k == "" {
			errs = append(errs, fmt.Errorf("--oidc-required-claim: a claim name must not be empty"))
		}
	}
	return errs
}
