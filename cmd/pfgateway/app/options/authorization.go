package options

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
)

// Authorization modes (--authorization-mode), named like the
// kube-apiserver's.
const (
	// AuthorizationModeWebhook asks the cluster's API server with a
	// SubjectAccessReview for create on pods/portforward.
	AuthorizationModeWebhook = "Webhook"
	// AuthorizationModeAlwaysAllow lets every authenticated caller
	// port-forward (read-only calls are still authorized by the API server
	// as the impersonated caller).
	AuthorizationModeAlwaysAllow = "AlwaysAllow"
)

// AuthorizationOptions say who may port-forward to which pod.
type AuthorizationOptions struct {
	Mode                        string
	WebhookCacheAuthorizedTTL   time.Duration
	WebhookCacheUnauthorizedTTL time.Duration
}

// NewAuthorizationOptions returns the defaults: SubjectAccessReview with
// the kube-apiserver's delegated-authorization cache times (10 s each).
func NewAuthorizationOptions() AuthorizationOptions {
	return AuthorizationOptions{
		Mode:                        AuthorizationModeWebhook,
		WebhookCacheAuthorizedTTL:   10 * time.Second,
		WebhookCacheUnauthorizedTTL: 10 * time.Second,
	}
}

// AddFlags registers the authorization flags on fs.
func (o *AuthorizationOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Mode, "authorization-mode", o.Mode, "How port-forward requests are authorized: \"Webhook\" (a SubjectAccessReview in the cluster for create on pods/portforward, for both SPDY's POST and WebSocket's GET) or \"AlwaysAllow\" (every authenticated caller; unsafe). Read-only API calls are always authorized by the API server, as the caller, through impersonation.")
	fs.DurationVar(&o.WebhookCacheAuthorizedTTL, "authorization-webhook-cache-authorized-ttl", o.WebhookCacheAuthorizedTTL, "How long an allowing SubjectAccessReview answer is cached (0 turns the cache off).")
	fs.DurationVar(&o.WebhookCacheUnauthorizedTTL, "authorization-webhook-cache-unauthorized-ttl", o.WebhookCacheUnauthorizedTTL, "How long a denying SubjectAccessReview answer is cached (0 turns the cache off).")
}

// Validate returns every problem, each naming its flag.
func (o *AuthorizationOptions) Validate() []error {
	var errs []error
	if o.Mode != AuthorizationModeWebhook && o.Mode != AuthorizationModeAlwaysAllow {
		errs = append(errs, fmt.Errorf("--authorization-mode %q must be %q or %q", o.Mode, AuthorizationModeWebhook, AuthorizationModeAlwaysAllow))
	}
	if o.WebhookCacheAuthorizedTTL < 0 {
		errs = append(errs, fmt.Errorf("--authorization-webhook-cache-authorized-ttl must not be negative, got %v", o.WebhookCacheAuthorizedTTL))
	}
	if o.WebhookCacheUnauthorizedTTL < 0 {
		errs = append(errs, fmt.Errorf("--authorization-webhook-cache-unauthorized-ttl must not be negative, got %v", o.WebhookCacheUnauthorizedTTL))
	}
	return errs
}
