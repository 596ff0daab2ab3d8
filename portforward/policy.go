package portforward

import (
	"errors"
	"net/http"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/policy"
	"github.com/pfgateway/pfgateway/relay"
	"github.com/pfgateway/pfgateway/resolve"
	"github.com/pfgateway/pfgateway/session"
	"github.com/pfgateway/pfgateway/status"
)

// admit applies the gateway policy to s once its pod is known. A denial is
// answered (403 Status, the API server's wording plus the policy's reason),
// counted, and ends s; admit then returns false. An admitted session
// carries the admitting rules and its per-stream port check.
func (h *Handler) admit(w http.ResponseWriter, req *http.Request, s *session.Session, target *resolve.Target) bool {
	pol := h.Policy.Current()
	if pol == nil {
		return true
	}
	a, err := pol.Admit(policy.Request{
		User: s.User, Groups: s.Groups, Cluster: s.Cluster, Namespace: s.Namespace, Pod: s.Pod, PodLabels: target.Labels,
	})
	switch {
	case err != nil:
	case s.Protocol == metrics.ProtocolWebSocketLegacy:
		// Its ports are all in the query: refuse before the upgrade.
		for _, p := range s.Ports {
			if !a.AllowsPort(p) {
				err = errors.New(a.PortDenial(p))
				break
			}
		}
	case h.Proxy.Streams == nil && a.RestrictsPorts():
		// The opaque splice cannot see ports. The loader refuses such a
		// policy with --splice-mode=opaque; this is the last line.
		err = errors.New("pfgateway policy: the rules that allow this pod restrict ports, which --splice-mode=opaque cannot enforce")
	}
	if err != nil {
		st := forbidden(req, s, err.Error())
		h.Metrics.RequestRejected(s.Cluster, http.StatusForbidden)
		klog.V(2).InfoS("Gateway policy denied a port-forward", "sessionID", s.ID, "user", s.User, "cluster", s.Cluster,
			"namespace", s.Namespace, "pod", s.Pod, "ports", s.Ports, "reason", err.Error())
		status.Write(w, req, st)
		s.End(metrics.OutcomeRejected, st.Error())
		return false
	}
	s.Policy = a.Rules()
	if a.RestrictsPorts() {
		s.Decide = portCheck(a)
	}
	return true
}

// portCheck refuses, per stream pair, a port the session's admission does
// not allow. The refusal carries a message on the pair's error stream, as
// the issue asks; the relay ends only that pair. client-go ends its whole
// session on any error-stream text (README, "Gateway policy").
func portCheck(a *policy.Admission) relay.Decide {
	return func(pi relay.PairInfo) relay.Decision {
		if a.AllowsPort(int32(pi.Port)) {
			return relay.Decision{}
		}
		return relay.Decision{Deny: true, Message: a.PortDenial(int32(pi.Port))}
	}
}

// forbidden is the API server's 403 for create on pods/portforward, with
// the policy's reason appended, as its authorization filter words it.
func forbidden(req *http.Request, s *session.Session, reason string) error {
	u, ok := request.UserFrom(req.Context())
	if !ok {
		u = &user.DefaultInfo{Name: s.User, Groups: s.Groups}
	}
	return responsewriters.ForbiddenStatusError(authorizer.AttributesRecord{
		User: u, Verb: "create", Namespace: s.Namespace, APIGroup: "", Resource: "pods", Subresource: "portforward",
		Name: s.Pod, ResourceRequest: true,
	}, reason)
}
