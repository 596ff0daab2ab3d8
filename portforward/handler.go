// Package portforward serves the pods/portforward subresource: it checks the
// request, opens a session, resolves the pod to its kubelet and hands the
// request to the upgrade proxy. It does not know which splice runs.
package portforward

import (
	"context"
	"errors"
	"net/http"

	"github.com/gorilla/mux"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/policy"
	"github.com/pfgateway/pfgateway/resolve"
	"github.com/pfgateway/pfgateway/router"
	"github.com/pfgateway/pfgateway/session"
	"github.com/pfgateway/pfgateway/status"
	"github.com/pfgateway/pfgateway/upgrade"
)

// Resolver finds the kubelet for a pod; *resolve.Resolver is one.
type Resolver interface {
	Resolve(ctx context.Context, namespace, name string) (*resolve.Target, error)
}

// Handler serves port-forward requests for the clusters it has resolvers for.
type Handler struct {
	Resolvers map[string]Resolver
	Proxy     *upgrade.Proxy
	Sessions  *session.Registry
	Metrics   *metrics.Metrics
	// Policy is the gateway policy; nil (or a nil loader) allows what the
	// cluster's authorization allows.
	Policy *policy.Loader
	// ResolverFor, when set, replaces Resolvers: the clusters served change
	// when the clusters file is reloaded (package clusters).
	ResolverFor func(cluster string) (Resolver, bool)
}

// reject answers a request refused before its session began, and counts it.
func (h *Handler) reject(w http.ResponseWriter, req *http.Request, cluster string, err error) {
	code := http.StatusInternalServerError
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		code = int(st.Status().Code)
	}
	h.Metrics.RequestRejected(cluster, code)
	status.Write(w, req, err)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	vars := mux.Vars(req)
	ns, name := vars["namespace"], vars["name"]
	cluster := router.ClusterFrom(req.Context())
	resolver, ok := h.resolver(cluster)
	if !ok {
		status.Write(w, req, apierrors.NewInternalError(errors.New("no resolver for cluster "+cluster)))
		return
	}
	protocol, err := upgrade.DetectProtocol(req)
	if err != nil {
		h.reject(w, req, cluster, err)
		return
	}
	var ports []int32
	if protocol == metrics.ProtocolWebSocketLegacy {
		if ports, err = upgrade.ParsePorts(req.URL.Query()); err != nil {
			h.reject(w, req, cluster, err)
			return
		}
	}
	s := &session.Session{
		Source: req.RemoteAddr, Cluster: cluster, Namespace: ns, Pod: name,
		Protocol: protocol, Ports: ports, Context: req.Context(),
	}
	if u, ok := request.UserFrom(req.Context()); ok {
		s.User, s.Groups = u.GetName(), u.GetGroups()
	}
	h.userLimits(s)
	if _, err := h.Sessions.Begin(s); err != nil {
		var limit session.ErrLimit
		if errors.As(err, &limit) {
			// 429 with Retry-After: 1, like the API server's max-in-flight filter.
			h.reject(w, req, cluster, apierrors.NewTooManyRequests(err.Error(), 1))
			return
		}
		h.reject(w, req, cluster, apierrors.NewServiceUnavailable(err.Error()))
		return
	}
	target, err := resolver.Resolve(req.Context(), ns, name)
	if err != nil {
		var st apierrors.APIStatus
		if !errors.As(err, &st) {
			err = apierrors.NewServiceUnavailable("unable to reach the API server of cluster " + cluster + ": " + err.Error())
		}
		status.Write(w, req, err)
		s.End(metrics.OutcomeRejected, err.Error())
		return
	}
	s.SetNode(target.Node)
	s.SetPodUID(target.UID)
	if !h.admit(w, req, s, target) {
		return
	}
	s.LimitForwards() // after the policy's port check, which it wraps
	h.Proxy.ServeResolved(w, req, s, target.URL, target.Node, h.reresolve(s, resolver))
}
