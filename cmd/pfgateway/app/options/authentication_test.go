package options

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestAuthenticationDefaults(t *testing.T) {
	want := AuthenticationOptions{
		TokenWebhookCacheTTL: 10 * time.Second,
		OIDC:                 OIDCOptions{UsernameClaim: "sub", SigningAlgs: []string{"RS256"}},
	}
	if got := NewOptions().Authn; !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults changed:\n got %+v\nwant %+v", got, want)
	}
}

func TestAuthenticationFlagsParse(t *testing.T) {
	o := NewOptions()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	err := fs.Parse([]string{
		"--anonymous-auth", "--authentication-token-webhook", "--authentication-token-webhook-cache-ttl=1m",
		"--api-audiences=a,b", "--oidc-issuer-url=https://issuer.example", "--oidc-client-id=gw",
		"--oidc-username-claim=email", "--oidc-username-prefix=-", "--oidc-groups-claim=groups", "--oidc-groups-prefix=oidc:",
		"--oidc-ca-file=/ca", "--oidc-signing-algs=RS256,ES256", "--oidc-required-claim=hd=example.com", "--oidc-required-claim=team=sre",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := AuthenticationOptions{
		Anonymous: true, TokenWebhook: true, TokenWebhookCacheTTL: time.Minute, APIAudiences: []string{"a", "b"},
		OIDC: OIDCOptions{
			IssuerURL: "https://issuer.example", ClientID: "gw", CAFile: "/ca", UsernameClaim: "email", UsernamePrefix: "-",
			GroupsClaim: "groups", GroupsPrefix: "oidc:", SigningAlgs: []string{"RS256", "ES256"},
			RequiredClaims: map[string]string{"hd": "example.com", "team": "sre"},
		},
	}
	if !reflect.DeepEqual(o.Authn, want) {
		t.Fatalf("parsed\n %+v\nwant %+v", o.Authn, want)
	}
}

func TestAuthenticationValidate(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if err := os.WriteFile(ca, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	oidc := func(o *AuthenticationOptions) {
		o.OIDC.IssuerURL, o.OIDC.ClientID = "https://issuer.example/realm", "gw"
	}
	tests := []struct {
		name    string
		mutate  func(*AuthenticationOptions)
		wantErr string // "" for valid
	}{
		{name: "defaults", mutate: func(*AuthenticationOptions) {}},
		{name: "webhook and anonymous", mutate: func(o *AuthenticationOptions) { o.TokenWebhook, o.Anonymous = true, true }},
		{name: "webhook without a cache", mutate: func(o *AuthenticationOptions) { o.TokenWebhook, o.TokenWebhookCacheTTL = true, 0 }},
		{name: "negative cache TTL", mutate: func(o *AuthenticationOptions) { o.TokenWebhookCacheTTL = -time.Second }, wantErr: "--authentication-token-webhook-cache-ttl must not be negative"},
		{name: "empty audience", mutate: func(o *AuthenticationOptions) { o.APIAudiences = []string{"a", ""} }, wantErr: "--api-audiences must not contain an empty audience"},
		{name: "complete OIDC", mutate: func(o *AuthenticationOptions) {
			oidc(o)
			o.OIDC.CAFile, o.OIDC.GroupsClaim, o.OIDC.RequiredClaims = ca, "groups", map[string]string{"hd": "x"}
		}},
		{name: "OIDC issuer without client ID", mutate: func(o *AuthenticationOptions) { o.OIDC.IssuerURL = "https://issuer.example" }, wantErr: "--oidc-issuer-url and --oidc-client-id must be specified together"},
		{name: "OIDC client ID without issuer", mutate: func(o *AuthenticationOptions) { o.OIDC.ClientID = "gw" }, wantErr: "--oidc-issuer-url and --oidc-client-id must be specified together"},
		{name: "another OIDC flag alone", mutate: func(o *AuthenticationOptions) { o.OIDC.GroupsClaim = "groups" }, wantErr: "--oidc-issuer-url and --oidc-client-id must be specified together"},
		{name: "plain HTTP issuer", mutate: func(o *AuthenticationOptions) { oidc(o); o.OIDC.IssuerURL = "http://issuer.example" }, wantErr: `--oidc-issuer-url "http://issuer.example" must be an https:// URL`},
		{name: "issuer with a query", mutate: func(o *AuthenticationOptions) { oidc(o); o.OIDC.IssuerURL = "https://issuer.example/?a=b" }, wantErr: "must not contain a user, query or fragment"},
		{name: "unreadable CA file", mutate: func(o *AuthenticationOptions) { oidc(o); o.OIDC.CAFile = filepath.Join(dir, "nope") }, wantErr: "--oidc-ca-file: open"},
		{name: "empty username claim", mutate: func(o *AuthenticationOptions) { oidc(o); o.OIDC.UsernameClaim = "" }, wantErr: "--oidc-username-claim must not be empty"},
		{name: "unknown signing algorithm", mutate: func(o *AuthenticationOptions) { oidc(o); o.OIDC.SigningAlgs = []string{"HS256"} }, wantErr: `--oidc-signing-algs: "HS256" is not one of`},
		{name: "no signing algorithm", mutate: func(o *AuthenticationOptions) { oidc(o); o.OIDC.SigningAlgs = nil }, wantErr: "--oidc-signing-algs must name at least one algorithm"},
		{name: "empty required claim", mutate: func(o *AuthenticationOptions) { oidc(o); o.OIDC.RequiredClaims = map[string]string{"": "x"} }, wantErr: "--oidc-required-claim: a claim name must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewAuthenticationOptions()
			tt.mutate(&o)
			errs := o.Validate()
			if tt.wantErr == "" {
				if len(errs) > 0 {
					t.Fatalf("unexpected errors: %v", errs)
				}
				return
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.wantErr) {
				t.Fatalf("got %v, want one error containing %q", errs, tt.wantErr)
			}
		})
	}
}

// TestValidateClientCAOptional: without --client-ca-file the gateway can
// still authenticate by token; a set but missing file is still an error.
func TestValidateClientCAOptional(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := NewOptions()
	o.Serving.TLSCertFile, o.Serving.TLSPrivateKeyFile = file, file
	o.Kubelet.ClientCertificate, o.Kubelet.ClientKey, o.Kubelet.CertificateAuthority = file, file, file
	o.Authn.TokenWebhook = true
	if err := o.Validate(); err != nil {
		t.Fatalf("Validate without --client-ca-file: %v", err)
	}
	o.Authn.OIDC.IssuerURL = "http://x"
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--oidc-issuer-url") {
		t.Fatalf("Validate = %v, want the OIDC errors reported through Options.Validate", err)
	}
}
