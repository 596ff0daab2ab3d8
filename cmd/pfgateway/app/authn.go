package app

import (
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/client-go/kubernetes"

	"github.com/pfgateway/pfgateway/authn"
	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
)

// newAuthenticator builds the caller authenticator chain from validated
// options; TokenReviews go to the target cluster with client's credentials.
func newAuthenticator(o *options.Options, client kubernetes.Interface) (*authn.Authenticator, error) {
	a := o.Authn
	c := authn.Config{
		ClientCAFile:        o.Serving.ClientCAFile,
		TokenReviewCacheTTL: a.TokenWebhookCacheTTL,
		APIAudiences:        authenticator.Audiences(a.APIAudiences),
		Anonymous:           a.Anonymous,
	}
	if a.TokenWebhook {
		c.TokenReview = client.AuthenticationV1()
	}
	if a.OIDC.Enabled() {
		oidc := authn.OIDC(a.OIDC)
		c.OIDC = &oidc
	}
	return authn.New(c)
}
