// Package authn authenticates callers the way the kube-apiserver does, with
// any combination of: X.509 client certificates signed by --client-ca-file
// (CN is the user name, O the groups; the CA file reloaded on change),
// bearer tokens checked by TokenReview in the target cluster, OIDC ID tokens,
// and anonymous requests (config.go composes them).
package authn

import (
	"context"
	"fmt"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

// ClientCert authenticates requests by their verified client certificate.
type ClientCert struct {
	authenticator.Request
	ca *dynamiccertificates.DynamicFileCAContent
}

var _ authenticator.Request = (*ClientCert)(nil)

// NewClientCert loads caFile. Call Run to reload it when it changes.
func NewClientCert(caFile string) (*ClientCert, error) {
	ca, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca", caFile)
	if err != nil {
		return nil, fmt.Errorf("--client-ca-file: %w", err)
	}
	// Like the API server, every authenticated user is in system:authenticated.
	req := group.NewAuthenticatedGroupAdder(x509.NewDynamic(ca.VerifyOptions, x509.CommonNameUserConversion))
	return &ClientCert{Request: req, ca: ca}, nil
}

// Run watches the CA file until ctx ends.
func (c *ClientCert) Run(ctx context.Context) { c.ca.Run(ctx, 1) }
