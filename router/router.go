// Package router holds pfgateway's one table of routes and the filter chain
// in front of it, composed like the API server's DefaultBuildHandlerChain:
// panic recovery and request info outermost, then authentication (its
// failures audited), the audit of refused requests, the known-cluster check,
// the refusal of callers' Impersonate-* headers, the port-forward
// authorization, and the routes. The same table serves /api/v1/… and
// /clusters/{cluster}/api/v1/….
package router

import (
	"net/http"

	"github.com/gorilla/mux"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapifilters "k8s.io/apiserver/pkg/endpoints/filters"
	"k8s.io/apiserver/pkg/endpoints/request"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/pfgateway/pfgateway/authz"
	"github.com/pfgateway/pfgateway/status"
)

// Config is what the router needs.
type Config struct {
	// Clusters names the clusters served; the first is the default for paths
	// without a /clusters/{name} prefix.
	Clusters []string
	// Known, when set, says which clusters are served now (they change when
	// the clusters file is reloaded); nil means exactly Clusters.
	Known func(cluster string) bool
	// Authenticator identifies callers; requests it rejects get a 401 Status.
	Authenticator authenticator.Request
	// Authorizer decides each port-forward (authz.PortForwardAttributes);
	// nil refuses them all. Read-only calls are authorized by the API server.
	Authorizer authorizer.UnconditionalAuthorizer
	// APIAudiences, when set, are the audiences tokens must be meant for.
	APIAudiences authenticator.Audiences
	// PortForward serves pods/{name}/portforward.
	PortForward http.Handler
	// ReadOnly serves the read-only API calls kubectl makes before the upgrade.
	ReadOnly http.Handler
	// Audit records port-forward requests refused before a session began
	// (*audit.Auditor; a nil one records nothing).
	Audit Auditor
}

// Auditor provides the audit's two filters: one right after authentication,
// one around the answer to failed authentications (as the apiserver's
// WithFailedAuthenticationAudit).
type Auditor interface {
	WithRefused(http.Handler) http.Handler
	WithFailedAuthentication(http.Handler) http.Handler
}

// PortForwardPath is the route of the portforward subresource.
const PortForwardPath = "/api/v1/namespaces/{namespace}/pods/{name}/portforward"

// New returns the gateway's handler.
func New(c Config) http.Handler {
	h := routes(c)
	h = authz.WithPortForwardAuthorization(h, c.Authorizer)
	h = authz.WithImpersonationRefused(h)
	h = withKnownCluster(h, c.known())
	failed := genericapifilters.Unauthorized(scheme.Codecs.WithoutConversion())
	if c.Audit != nil {
		h, failed = c.Audit.WithRefused(h), c.Audit.WithFailedAuthentication(failed)
	}
	h = genericapifilters.WithAuthentication(h, c.Authenticator, failed, c.APIAudiences, nil)
	resolver := &request.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")}
	h = genericapifilters.WithRequestInfo(h, resolver)
	h = withClusterPrefix(h, c.Clusters[0])
	return genericfilters.WithPanicRecovery(h, resolver)
}

// routes is the table. Reads are limited to what kubectl port-forward asks
// for; everything else under /api and /apis is refused with a 403 Status.
func routes(c Config) http.Handler {
	r := mux.NewRouter()
	r.SkipClean(true) // unclean paths are refused by withClusterPrefix, not redirected
	r.NotFoundHandler = http.HandlerFunc(status.NotFound)
	r.MethodNotAllowedHandler = http.HandlerFunc(status.MethodNotAllowed)

	get := func(path string) *mux.Route { return r.Handle(path, c.ReadOnly).Methods(http.MethodGet) }
	get("/version")
	get("/api")
	get("/api/v1")
	get("/apis")
	get("/apis/{group}")
	get("/apis/{group}/{version}")
	get("/api/v1/namespaces/{namespace}/pods/{name}")
	// kubectl lists pods by the selector of a service or workload; a list
	// without a selector is not one of kubectl's port-forward calls.
	get("/api/v1/namespaces/{namespace}/pods").Queries("labelSelector", "{selector:.+}")
	get("/api/v1/namespaces/{namespace}/{resource:services|replicationcontrollers}/{name}")
	get("/apis/apps/v1/namespaces/{namespace}/{resource:deployments|replicasets|statefulsets|daemonsets}/{name}")
	get("/apis/batch/v1/namespaces/{namespace}/jobs/{name}")

	r.Handle(PortForwardPath, c.PortForward).Methods(http.MethodGet, http.MethodPost)
	r.Handle(PortForwardPath, http.HandlerFunc(status.MethodNotAllowed))

	r.MatcherFunc(isAPIPath).Handler(http.HandlerFunc(status.OnlyPortForward))
	return r
}

func isAPIPath(req *http.Request, _ *mux.RouteMatch) bool {
	p := req.URL.Path
	return p == "/api" || p == "/apis" || hasPrefix(p, "/api/") || hasPrefix(p, "/apis/")
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }
