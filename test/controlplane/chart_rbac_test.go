package controlplane

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestChartRBAC applies the chart's ServiceAccount, ClusterRoles and
// ClusterRoleBindings to the real API server for real, runs the gateway
// with the chart's Deployment args and that ServiceAccount's token as its
// only cluster credential, and port-forwards through it with kubectl 1.33
// as a ServiceAccount caller (bearer token: TokenReview; SubjectAccessReview;
// kubectl's pod read relayed with impersonation, credential-id extra
// included): 4 MiB each way, SHA-256 checked. Then it shows the rules are
// not more than needed: what the chart does not grant is denied, and with
// one rule removed the gateway fails the way that rule's use predicts.
func TestChartRBAC(t *testing.T) {
	c := needControlPlane(t)
	helm := chartHelm(t)
	kbin := kubectlBinary(t, 33)
	kc := c.chartAdmin(t, kbin)

	rbac, deploy := chartObjects(t, helm)
	if _, err := kubectlAdmin(kbin, kc, rbac, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := kubectlAdmin(kbin, kc, rbac, "delete", "--wait=false", "-f", "-"); err != nil {
			t.Errorf("deleting the chart's RBAC: %v", err)
		}
	})
	saGroups := []string{"system:serviceaccounts", "system:serviceaccounts:" + chartNamespace, "system:authenticated"}
	c.waitSAR(t, chartSAUser, saGroups, authzv1.ResourceAttributes{Verb: "impersonate", Group: "authentication.k8s.io", Resource: "userextras", Subresource: "authentication.kubernetes.io/credential-id"}, true)
	c.waitSAR(t, chartKubeletUser, nil, authzv1.ResourceAttributes{Verb: "create", Resource: "nodes", Subresource: "proxy", Name: nodeName}, true)

	gwKubeconfig := c.tokenKubeconfig(t, c.apiURL, c.saToken(t, chartNamespace, chartSA))
	args := append(c.gatewayArgs(t, deploy), "--kubeconfig="+gwKubeconfig)
	callerToken := c.saToken(t, namespace, saName)

	t.Run("port-forward with the chart's permissions", func(t *testing.T) {
		g := c.startGateway(t, args...)
		addr := kubectlPortForward(t, kubectlBinary(t, 33), c.tokenKubeconfig(t, g.addr, callerToken))
		exchangeVia(t, addr, 400)
	})

	t.Run("nothing more is granted", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, tc := range []struct {
			user string
			ra   authzv1.ResourceAttributes
			want bool
		}{
			{chartSAUser, authzv1.ResourceAttributes{Verb: "get", Resource: "pods", Namespace: namespace, Name: podName}, true},
			{chartSAUser, authzv1.ResourceAttributes{Verb: "watch", Resource: "nodes"}, true},
			{chartSAUser, authzv1.ResourceAttributes{Verb: "impersonate", Resource: "serviceaccounts", Namespace: namespace, Name: saName}, true},
			{chartSAUser, authzv1.ResourceAttributes{Verb: "list", Resource: "pods", Namespace: namespace}, true}, // podwatch
			{chartSAUser, authzv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "portforward", Namespace: namespace, Name: podName}, false},
			{chartSAUser, authzv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: namespace, Name: podName}, false},
			{chartSAUser, authzv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: chartNamespace}, false},
			{chartSAUser, authzv1.ResourceAttributes{Verb: "create", Resource: "nodes", Subresource: "proxy", Name: nodeName}, false},
			{chartSAUser, authzv1.ResourceAttributes{Verb: "update", Resource: "nodes", Name: nodeName}, false},
			{chartSAUser, authzv1.ResourceAttributes{Verb: "impersonate", Group: "authentication.k8s.io", Resource: "userextras", Subresource: "scopes"}, false},
			{chartKubeletUser, authzv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "proxy", Name: nodeName}, true},
			{chartKubeletUser, authzv1.ResourceAttributes{Verb: "delete", Resource: "nodes", Subresource: "proxy", Name: nodeName}, false},
			{chartKubeletUser, authzv1.ResourceAttributes{Verb: "get", Resource: "nodes", Name: nodeName}, false},
			{chartKubeletUser, authzv1.ResourceAttributes{Verb: "get", Resource: "pods", Namespace: namespace, Name: podName}, false},
		} {
			groups := saGroups
			if tc.user == chartKubeletUser {
				groups = []string{"system:authenticated"}
			}
			got, err := c.chartSAR(ctx, tc.user, groups, tc.ra)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("%s %+v: allowed=%v, want %v", tc.user, tc.ra, got, tc.want)
			}
		}
	})

	// Each rule removed in turn: the gateway then fails where it uses it.
	for _, tc := range []struct {
		name string
		drop func(rbacv1.PolicyRule) bool
		// gone is a permission the removed rule granted.
		gone  authzv1.ResourceAttributes
		check func(t *testing.T, g *gateway)
	}{{
		name: "without subjectaccessreviews",
		drop: func(r rbacv1.PolicyRule) bool { return has(r.Resources, "subjectaccessreviews") },
		gone: authzv1.ResourceAttributes{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews"},
		check: func(t *testing.T, g *gateway) {
			code, st := rawStatus(t, c.tokenConfig(g.addr, callerToken))
			wantStatus(t, "gateway", code, st, http.StatusInternalServerError, metav1.StatusReasonInternalError,
				"Internal error occurred: the SubjectAccessReview for this request failed")
		},
	}, {
		name: "without tokenreviews",
		drop: func(r rbacv1.PolicyRule) bool { return has(r.Resources, "tokenreviews") },
		gone: authzv1.ResourceAttributes{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"},
		check: func(t *testing.T, g *gateway) {
			code, st := rawStatus(t, c.tokenConfig(g.addr, callerToken))
			wantStatus(t, "gateway", code, st, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
		},
	}, {
		name: "without the userextras",
		drop: func(r rbacv1.PolicyRule) bool {
			return has(r.Resources, "userextras/authentication.kubernetes.io/credential-id")
		},
		gone: authzv1.ResourceAttributes{Verb: "impersonate", Group: "authentication.k8s.io", Resource: "userextras", Subresource: "authentication.kubernetes.io/credential-id"},
		check: func(t *testing.T, g *gateway) {
			wantForbiddenRead(t, c.tokenConfig(g.addr, callerToken), `cannot impersonate resource "userextras/authentication.kubernetes.io/credential-id"`)
		},
	}, {
		name: "without uids",
		drop: func(r rbacv1.PolicyRule) bool { return has(r.Resources, "uids") },
		gone: authzv1.ResourceAttributes{Verb: "impersonate", Group: "authentication.k8s.io", Resource: "uids"},
		check: func(t *testing.T, g *gateway) {
			wantForbiddenRead(t, c.tokenConfig(g.addr, callerToken), `cannot impersonate resource "uids"`)
		},
	}, {
		name: "without users, groups and serviceaccounts",
		drop: func(r rbacv1.PolicyRule) bool { return has(r.Resources, "serviceaccounts") },
		gone: authzv1.ResourceAttributes{Verb: "impersonate", Resource: "serviceaccounts", Namespace: namespace, Name: saName},
		check: func(t *testing.T, g *gateway) {
			wantForbiddenRead(t, c.tokenConfig(g.addr, callerToken), `cannot impersonate resource "serviceaccounts"`)
		},
	}, {
		name: "without pods get",
		drop: func(r rbacv1.PolicyRule) bool { return has(r.Resources, "pods") },
		gone: authzv1.ResourceAttributes{Verb: "get", Resource: "pods", Namespace: namespace, Name: podName},
		check: func(t *testing.T, g *gateway) {
			// The gateway reads the pod with its own identity to find the node.
			_, err := forwardClientGo(t, c.tokenConfig(g.addr, callerToken))
			want := `error upgrading connection: unable to upgrade connection: pods "` + podName + `" is forbidden: User "` + chartSAUser +
				`" cannot get resource "pods" in API group "" in the namespace "` + namespace + `"`
			if err == nil || err.Error() != want {
				t.Errorf("port-forward: %v; want %q", err, want)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			restore := c.dropChartRule(t, tc.drop)
			defer func() {
				restore()
				c.waitSAR(t, chartSAUser, saGroups, tc.gone, true)
			}()
			c.waitSAR(t, chartSAUser, saGroups, tc.gone, false)
			tc.check(t, c.startGateway(t, args...))
		})
	}
}

// dropChartRule removes the rule matching drop from the chart's ClusterRole
// and returns a func that puts it back.
func (c *controlPlane) dropChartRule(t *testing.T, drop func(rbacv1.PolicyRule) bool) func() {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	roles := c.admin.RbacV1().ClusterRoles()
	cr, err := roles.Get(ctx, chartSA, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	orig := cr.Rules
	var kept []rbacv1.PolicyRule
	for _, r := range orig {
		if !drop(r) {
			kept = append(kept, r)
		}
	}
	if len(kept) != len(orig)-1 {
		t.Fatalf("want exactly one rule dropped from %v", orig)
	}
	cr.Rules = kept
	if _, err := roles.Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cr, err := roles.Get(ctx, chartSA, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cr.Rules = orig
		if _, err := roles.Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// wantForbiddenRead GETs the test pod through the gateway (the read kubectl
// port-forward makes first) and wants the API server's 403 containing msg.
func wantForbiddenRead(t *testing.T, cfg *rest.Config, msg string) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = cs.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), msg) {
		t.Errorf("GET the pod through the gateway: %v; want the API server's 403 with %q", err, msg)
	}
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
