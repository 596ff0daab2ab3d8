package portforward

import (
	"context"
	"fmt"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/pfgateway/pfgateway/policy"
	"github.com/pfgateway/pfgateway/session"
	"github.com/pfgateway/pfgateway/upgrade"
)

// reresolve finds session s's pod again when its kubelet connection must be
// replaced: the pod may have moved to another node or been recreated. The
// gateway policy is asked again, since a recreated pod may carry other
// labels; the caller's RBAC is by pod name, which has not changed.
func (h *Handler) reresolve(s *session.Session, r Resolver) upgrade.Reresolve {
	return func(ctx context.Context) (*url.URL, string, error) {
		t, err := r.Resolve(ctx, s.Namespace, s.Pod)
		if err != nil {
			return nil, "", err
		}
		if pol := h.Policy.Current(); pol != nil {
			_, err := pol.Admit(policy.Request{
				User: s.User, Groups: s.Groups, Cluster: s.Cluster, Namespace: s.Namespace, Pod: s.Pod, PodLabels: t.Labels,
			})
			if err != nil {
				return nil, "", apierrors.NewForbidden(schema.GroupResource{Resource: "pods/portforward"}, s.Pod,
					fmt.Errorf("the gateway policy no longer allows the pod: %v", err))
			}
		}
		return t.URL, t.Node, nil
	}
}
