package controlplane

import (
	"context"
	"fmt"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/controlplane"
	"github.com/pfgateway/pfgateway/devcluster/kubelet"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// The objects every test shares.
const (
	namespace = "cp"
	nodeName  = "cp-node"
	podName   = "hash"
	podPort   = 7000
	saName    = "pf-sa" // a ServiceAccount RBAC lets port-forward

	gatewayUser = "pfgateway" // the gateway's own identity in the cluster
	// Users, by client certificate CN:
	userAllowed     = "alice" // may get pods and create pods/portforward
	userDenied      = "bob"   // no Role at all
	userForwardOnly = "carol" // may create pods/portforward but not get pods
)

// createObjects registers the kubelet as a Node, creates the namespace, the
// pod bound to that node, the ServiceAccounts and the RBAC rules, and the
// gateway's kubeconfig.
func (c *controlPlane) createObjects() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	core := c.admin.CoreV1()

	if err := controlplane.RegisterNode(ctx, core, nodeName, c.kubelet.Port()); err != nil {
		return err
	}
	if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := controlplane.CreateServiceAccounts(ctx, core, namespace, "default", saName); err != nil {
		return err
	}
	pod, err := controlplane.CreateRunningPod(ctx, core, namespace, podName, nodeName, podPort)
	if err != nil {
		return err
	}
	c.kubelet.SetPod(kubelet.Pod{Namespace: namespace, Name: podName, UID: string(pod.UID), Ports: map[int32]string{podPort: c.hash.Addr()}})

	if err := c.createRBAC(ctx); err != nil {
		return err
	}
	gw, err := c.ca.Issue(pki.IssueOptions{CommonName: gatewayUser, Usage: pki.Client})
	if err != nil {
		return err
	}
	c.gatewayKubeconfig = c.path("pfgateway.kubeconfig")
	return devcluster.WriteKubeconfig(c.gatewayKubeconfig, c.apiURL, c.ca.CertPEM, gw)
}

// createRBAC gives the gateway what issue 4 says it needs, and the users
// their Roles; it returns once the RBAC authorizer has seen them.
func (c *controlPlane) createRBAC(ctx context.Context) error {
	rbac := c.admin.RbacV1()
	gateway := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: gatewayUser},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{""}, Resources: []string{"users", "groups", "serviceaccounts"}, Verbs: []string{"impersonate"}},
			// RBAC has no "userextras/*" wildcard (only "*" and "*/sub"):
			// each extra key a caller can carry is listed — a client
			// certificate's hash, a bound ServiceAccount token's node and pod.
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{
				"uids",
				"userextras/authentication.kubernetes.io/credential-id",
				"userextras/authentication.kubernetes.io/node-name",
				"userextras/authentication.kubernetes.io/node-uid",
				"userextras/authentication.kubernetes.io/pod-name",
				"userextras/authentication.kubernetes.io/pod-uid",
			}, Verbs: []string{"impersonate"}},
		},
	}
	if _, err := rbac.ClusterRoles().Create(ctx, gateway, metav1.CreateOptions{}); err != nil {
		return err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: gatewayUser},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: gatewayUser},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: gatewayUser}},
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return err
	}

	// kubectl port-forward reads the pod first, then creates the
	// portforward subresource (POST for SPDY, GET for WebSocket).
	roles := map[string][]rbacv1.PolicyRule{
		"port-forward": {
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"get", "create"}},
		},
		"port-forward-only": {
			{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"get", "create"}},
		},
	}
	subjects := map[string][]rbacv1.Subject{
		"port-forward": {
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: userAllowed},
			{Kind: rbacv1.ServiceAccountKind, Name: saName, Namespace: namespace},
		},
		"port-forward-only": {{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: userForwardOnly}},
	}
	for name, rules := range roles {
		if _, err := rbac.Roles(namespace).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
			return err
		}
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   subjects[name],
		}
		if _, err := rbac.RoleBindings(namespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	// The authorizer reads RBAC objects through informers: wait until the
	// last binding is visible to it.
	for _, w := range []struct{ user, verb, sub string }{
		{userAllowed, "create", "portforward"}, {userForwardOnly, "create", "portforward"}, {gatewayUser, "get", ""},
	} {
		if err := c.waitAllowed(ctx, w.user, w.verb, "pods", w.sub); err != nil {
			return err
		}
	}
	return nil
}

// allowed asks the API server whether user may verb pods[/sub] in the
// test namespace.
func (c *controlPlane) allowed(ctx context.Context, user, verb, resource, sub string) (bool, error) {
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User:               user,
		Groups:             []string{"system:authenticated"},
		ResourceAttributes: &authzv1.ResourceAttributes{Namespace: namespace, Verb: verb, Resource: resource, Subresource: sub, Name: podName},
	}}
	res, err := c.admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return res.Status.Allowed, nil
}

func (c *controlPlane) waitAllowed(ctx context.Context, user, verb, resource, sub string) error {
	for {
		ok, err := c.allowed(ctx, user, verb, resource, sub)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("RBAC never allowed %s to %s %s/%s: %w", user, verb, resource, sub, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
