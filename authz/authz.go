// Package authz decides whether a caller may port-forward to a pod, with a
// SubjectAccessReview in the target cluster (k8s.io/apiserver's webhook
// authorizer, cached), and makes the read-only calls the gateway relays
// carry the caller's identity as impersonation headers, so the API server
// authorizes those as the caller too.
package authz

import (
	"errors"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	k8saudit "k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/plugin/pkg/authorizer/webhook"
	webhookmetrics "k8s.io/apiserver/plugin/pkg/authorizer/webhook/metrics"
	"k8s.io/client-go/kubernetes/scheme"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/status"
)

// The API server's audit annotation keys for authorization decisions.
const (
	decisionAnnotation = "authorization.k8s.io/decision"
	reasonAnnotation   = "authorization.k8s.io/reason"
)

// NewWebhook returns an authorizer that asks the cluster's API server with a
// SubjectAccessReview, caching allowed answers for allowTTL and denied ones
// for denyTTL, and retrying transient failures with the API server's default
// backoff (about 4 s in all). A failed review is no opinion with an error,
// which WithPortForwardAuthorization turns into a 500, never an allow.
func NewWebhook(client authorizationv1client.AuthorizationV1Interface, allowTTL, denyTTL time.Duration) (authorizer.Authorizer, error) {
	backoff := webhook.DefaultRetryBackoff()
	// nil CEL compiler: no match conditions are configured, so none is compiled.
	return webhook.NewFromInterface(client, allowTTL, denyTTL, *backoff, authorizer.DecisionNoOpinion,
		webhookmetrics.NoopAuthorizerMetrics{}, nil)
}

// PortForwardAttributes are what a port-forward request asks for, as the
// API server authorizes it since Kubernetes 1.35: verb create on
// pods/portforward for both POST (SPDY) and GET (WebSocket). The API
// server's RequestInfo would say get for a GET, which RBAC roles written
// for kubectl's SPDY (create) would not match, so the verb is set here.
// ok is false for any other request.
func PortForwardAttributes(req *http.Request) (authorizer.Attributes, bool) {
	if req.Method != http.MethodGet && req.Method != http.MethodPost {
		return nil, false
	}
	info, found := request.RequestInfoFrom(req.Context())
	if !found || !info.IsResourceRequest || info.APIPrefix != "api" || info.APIGroup != "" || info.APIVersion != "v1" ||
		info.Resource != "pods" || info.Subresource != "portforward" || info.Namespace == "" || info.Name == "" {
		return nil, false
	}
	a := &authorizer.AttributesRecord{
		Verb:            "create",
		Namespace:       info.Namespace,
		APIGroup:        "",
		APIVersion:      "v1",
		Resource:        "pods",
		Subresource:     "portforward",
		Name:            info.Name,
		ResourceRequest: true,
		Path:            info.Path,
	}
	if u, ok := request.UserFrom(req.Context()); ok {
		a.User = u
	}
	return a, true
}

// errNoAuthorizer is the 500 for a router built without an authorizer: a
// wiring mistake must refuse, not let everyone through.
var errNoAuthorizer = errors.New("no authorizer is configured")

// WithPortForwardAuthorization asks a about every port-forward request
// (PortForwardAttributes) and passes on only those it allows, like the API
// server's genericapifilters.WithAuthorization: a denial or no opinion is a
// 403 Status in the API server's words plus the authorizer's reason, and an
// error without an allow is a 500. Other requests pass untouched: the
// read-only calls are authorized by the API server itself, as the
// impersonated caller (ImpersonatingTransport). A nil a refuses every
// port-forward.
func WithPortForwardAuthorization(next http.Handler, a authorizer.UnconditionalAuthorizer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		attrs, ok := PortForwardAttributes(req)
		if !ok {
			next.ServeHTTP(w, req)
			return
		}
		if a == nil {
			status.Write(w, req, apierrors.NewInternalError(errNoAuthorizer))
			return
		}
		decision, reason, err := a.Authorize(req.Context(), attrs)
		// The API server's audit annotations (filters/authorization.go),
		// so the audit records carry the decision like the API server's.
		if decision == authorizer.DecisionAllow {
			k8saudit.AddAuditAnnotations(req.Context(), decisionAnnotation, "allow", reasonAnnotation, reason)
			next.ServeHTTP(w, req)
			return
		}
		user := ""
		if u := attrs.GetUser(); u != nil {
			user = u.GetName()
		}
		if err != nil {
			// The API server answers plain text here
			// (responsewriters.InternalError); a Status reaches kubectl's
			// message instead of "unable to upgrade connection". The
			// error itself (it may name the API server) goes to the log.
			k8saudit.AddAuditAnnotation(req.Context(), reasonAnnotation, "internal error: the SubjectAccessReview failed")
			klog.ErrorS(err, "Authorization failed", "user", user, "namespace", attrs.GetNamespace(), "pod", attrs.GetName())
			status.Write(w, req, apierrors.NewInternalError(errors.New("the SubjectAccessReview for this request failed")))
			return
		}
		k8saudit.AddAuditAnnotations(req.Context(), decisionAnnotation, "forbid", reasonAnnotation, reason)
		klog.V(2).InfoS("Forbidden", "user", user, "namespace", attrs.GetNamespace(), "pod", attrs.GetName(), "reason", reason)
		responsewriters.Forbidden(attrs, w, req, reason, scheme.Codecs.WithoutConversion())
	})
}
