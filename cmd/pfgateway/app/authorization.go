package app

import (
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/authz"
	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
)

// newAuthorizer builds the port-forward authorizer --authorization-mode
// names; the SubjectAccessReviews go to the cluster with the gateway's own
// credentials (it needs create on subjectaccessreviews).
func newAuthorizer(o options.AuthorizationOptions, client kubernetes.Interface) (authorizer.Authorizer, error) {
	if o.Mode == options.AuthorizationModeAlwaysAllow {
		klog.Warning("--authorization-mode=AlwaysAllow: every authenticated caller may port-forward to any pod; read-only calls are still authorized by the API server as the caller")
		return authorizerfactory.NewAlwaysAllowAuthorizer(), nil
	}
	return authz.NewWebhook(client.AuthorizationV1(), o.WebhookCacheAuthorizedTTL, o.WebhookCacheUnauthorizedTTL)
}
