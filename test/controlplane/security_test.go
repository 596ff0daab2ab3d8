package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// forbiddenPortForward is the real API server's wording for a user RBAC
// does not let create pods/portforward (POST, as SPDY clients send it).
func forbiddenPortForward(user string) string {
	return fmt.Sprintf(`pods %q is forbidden: User %q cannot create resource "pods/portforward" in API group "" in the namespace %q`, podName, user, namespace)
}

// TestServiceAccountToken: a ServiceAccount token from the TokenRequest API
// is authenticated by the gateway through a TokenReview in the real cluster;
// client-go port-forwards with it. A bogus token gets the API server's own
// 401 — the same Status the API server answers directly.
func TestServiceAccountToken(t *testing.T) {
	c := needControlPlane(t)
	g := c.startGateway(t, "--authentication-token-webhook=true")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exp := int64(600) // the API server's minimum
	tr, err := c.admin.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, saName,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s: %v", saName, err)
	}

	t.Run("valid token", func(t *testing.T) {
		addr, err := forwardClientGo(t, c.tokenConfig(g.addr, tr.Status.Token))
		if err != nil {
			t.Fatalf("port-forward with %s's token: %v", saName, err)
		}
		exchangeVia(t, addr, 200)
	})

	t.Run("bogus token", func(t *testing.T) {
		const bogus = "not-a-token"
		code, st := rawStatus(t, c.tokenConfig(g.addr, bogus))
		wantStatus(t, "gateway", code, st, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
		code, st = rawStatus(t, c.tokenConfig(c.apiURL, bogus))
		wantStatus(t, "kube-apiserver (the reference)", code, st, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")

		_, err := forwardClientGo(t, c.tokenConfig(g.addr, bogus))
		if want := "error upgrading connection: unable to upgrade connection: Unauthorized"; err == nil || err.Error() != want {
			t.Errorf("client-go port-forward with a bogus token: got %v, want %q", err, want)
		}
	})
}

// TestSubjectAccessReview: the gateway authorizes pods/portforward with a
// SubjectAccessReview, so the cluster's RBAC decides. A user without a Role
// gets the 403 Status the API server gives for the same request, word for
// word; users with one forward.
func TestSubjectAccessReview(t *testing.T) {
	c := needControlPlane(t)
	g := c.startGateway(t, "--authorization-mode=Webhook")

	t.Run("denied", func(t *testing.T) {
		bob := c.user(t, userDenied, "devs")
		code, st := rawStatus(t, c.restConfig(g.addr, bob))
		wantStatus(t, "gateway", code, st, http.StatusForbidden, metav1.StatusReasonForbidden, forbiddenPortForward(userDenied))
		code, st = rawStatus(t, c.restConfig(c.apiURL, bob))
		wantStatus(t, "kube-apiserver (the reference)", code, st, http.StatusForbidden, metav1.StatusReasonForbidden, forbiddenPortForward(userDenied))

		_, err := forwardClientGo(t, c.restConfig(g.addr, bob))
		if want := "error upgrading connection: unable to upgrade connection: " + forbiddenPortForward(userDenied); err == nil || err.Error() != want {
			t.Errorf("client-go port-forward as %s: got %v, want %q", userDenied, err, want)
		}
	})

	// carol may create pods/portforward but not read pods: client-go's
	// forward does not read the pod, so the SAR alone lets her through.
	for i, user := range []string{userAllowed, userForwardOnly} {
		t.Run("allowed "+user, func(t *testing.T) {
			addr, err := forwardClientGo(t, c.restConfig(g.addr, c.user(t, user)))
			if err != nil {
				t.Fatalf("port-forward as %s: %v", user, err)
			}
			exchangeVia(t, addr, uint64(300+i))
		})
	}
}

// TestImpersonatedReads: the read-only calls kubectl makes are relayed with
// Impersonate-* of the caller, so the real API server applies the caller's
// RBAC, not the gateway's. carol may port-forward but not get pods: `kubectl
// get pod` through the gateway is refused by the API server in carol's name
// although the gateway itself may get pods. alice may, and gets the pod.
func TestImpersonatedReads(t *testing.T) {
	c := needControlPlane(t)
	g := c.startGateway(t, "--authorization-mode=Webhook")
	bin := newestKubectl(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Without impersonation the gateway's own rights would answer.
	if ok, err := c.allowed(ctx, gatewayUser, "get", "pods", ""); err != nil || !ok {
		t.Fatalf("precondition: %s may get pods: %v %v", gatewayUser, ok, err)
	}

	carol := c.user(t, userForwardOnly, "devs")
	want := fmt.Sprintf(`Error from server (Forbidden): pods %q is forbidden: User %q cannot get resource "pods" in API group "" in the namespace %q`, podName, userForwardOnly, namespace)
	for _, target := range []struct{ name, server string }{{"gateway", g.addr}, {"kube-apiserver (the reference)", c.apiURL}} {
		out, errOut, err := kubectl(t, bin, c.kubeconfig(t, target.server, carol), "get", "pod", podName, "-o", "name")
		if err == nil || out != "" || !hasLine(errOut, want) {
			t.Errorf("%s: kubectl get pod as %s: err %v, stdout %q, stderr %q; want a failure with the line %q",
				target.name, userForwardOnly, err, out, errOut, want)
		}
	}

	out, errOut, err := kubectl(t, bin, c.kubeconfig(t, g.addr, c.user(t, userAllowed, "devs")), "get", "pod", podName, "-o", "name")
	if err != nil || out != "pod/"+podName+"\n" {
		t.Errorf("kubectl get pod as %s through the gateway: err %v, stdout %q, stderr %q; want %q", userAllowed, err, out, errOut, "pod/"+podName+"\n")
	}
}

func hasLine(s, line string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}
