package authn

import (
	"reflect"
	"testing"

	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/utils/ptr"
)

// TestJWTAuthenticator pins the translation of the legacy --oidc-* flags,
// the kube-apiserver's, user name prefix rules included.
func TestJWTAuthenticator(t *testing.T) {
	const iss = "https://issuer.example"
	base := OIDC{IssuerURL: iss, ClientID: "gw", UsernameClaim: "sub"}
	issuer := apiserver.Issuer{URL: iss, Audiences: []string{"gw"}}
	tests := []struct {
		name   string
		mutate func(*OIDC)
		want   apiserver.ClaimMappings
		rules  []apiserver.ClaimValidationRule
	}{
		{name: "should prefix sub with the issuer by default", mutate: func(*OIDC) {},
			want: apiserver.ClaimMappings{Username: apiserver.PrefixedClaimOrExpression{Claim: "sub", Prefix: ptr.To(iss + "#")}}},
		{name: "should not prefix email by default", mutate: func(o *OIDC) { o.UsernameClaim = "email" },
			want: apiserver.ClaimMappings{Username: apiserver.PrefixedClaimOrExpression{Claim: "email", Prefix: ptr.To("")}}},
		{name: "should take - as no prefix", mutate: func(o *OIDC) { o.UsernamePrefix = "-" },
			want: apiserver.ClaimMappings{Username: apiserver.PrefixedClaimOrExpression{Claim: "sub", Prefix: ptr.To("")}}},
		{name: "should use an explicit prefix and map groups", mutate: func(o *OIDC) {
			o.UsernamePrefix, o.GroupsClaim, o.GroupsPrefix = "oidc:", "groups", "idp:"
		}, want: apiserver.ClaimMappings{
			Username: apiserver.PrefixedClaimOrExpression{Claim: "sub", Prefix: ptr.To("oidc:")},
			Groups:   apiserver.PrefixedClaimOrExpression{Claim: "groups", Prefix: ptr.To("idp:")},
		}},
		{name: "should turn required claims into sorted validation rules", mutate: func(o *OIDC) {
			o.RequiredClaims = map[string]string{"team": "sre", "hd": "example.com"}
		}, want: apiserver.ClaimMappings{Username: apiserver.PrefixedClaimOrExpression{Claim: "sub", Prefix: ptr.To(iss + "#")}},
			rules: []apiserver.ClaimValidationRule{{Claim: "hd", RequiredValue: "example.com"}, {Claim: "team", RequiredValue: "sre"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.mutate(&o)
			got := jwtAuthenticator(o)
			want := apiserver.JWTAuthenticator{Issuer: issuer, ClaimMappings: tt.want, ClaimValidationRules: tt.rules}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}
