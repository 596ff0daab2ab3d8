package e2e

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/portforward"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
)

// tunnelUpgrade is what client-go's WebSocket tunnel dialer sends.
var tunnelUpgrade = http.Header{
	"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"},
	"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Protocol": {"SPDY/3.1+portforward.k8s.io"},
}

// rbacReason is the dev API server's reason for denying pods named deny-*.
const rbacReason = `RBAC: no RoleBinding grants "alice" create on pods/portforward`

// denyPods is a SubjectAccessReview decision: pods named deny-* are
// forbidden, a pod named sar-error makes the review itself fail the way it
// does when the gateway may not create reviews, everything else is allowed.
func denyPods(spec authorizationv1.SubjectAccessReviewSpec) (authorizationv1.SubjectAccessReviewStatus, error) {
	name := ""
	if ra := spec.ResourceAttributes; ra != nil {
		name = ra.Name
	}
	switch {
	case strings.HasPrefix(name, "deny-"):
		return authorizationv1.SubjectAccessReviewStatus{Reason: rbacReason}, nil
	case name == "sar-error":
		return authorizationv1.SubjectAccessReviewStatus{}, apierrors.NewForbidden(
			schema.GroupResource{Group: "authorization.k8s.io", Resource: "subjectaccessreviews"}, "",
			errorString(`User "system:serviceaccount:pfgateway:pfgateway" cannot create resource "subjectaccessreviews"`))
	}
	return authorizationv1.SubjectAccessReviewStatus{Allowed: true}, nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

// reviewsOf returns the SubjectAccessReviews the dev API server answered
// for pod name.
func (e *env) reviewsOf(name string) []authorizationv1.SubjectAccessReview {
	var out []authorizationv1.SubjectAccessReview
	for _, r := range e.cluster.APIServer.SubjectAccessReviews() {
		if ra := r.Spec.ResourceAttributes; ra != nil && ra.Name == name {
			out = append(out, r)
		}
	}
	return out
}

// checkReview checks the one review for pod name asked what Kubernetes 1.35
// asks for a port-forward, for alice.
func (e *env) checkReview(t *testing.T, name string, wantAllowed bool) {
	t.Helper()
	reviews := e.reviewsOf(name)
	if len(reviews) != 1 {
		t.Fatalf("%d SubjectAccessReviews for pod %s, want 1", len(reviews), name)
	}
	spec := reviews[0].Spec
	want := authorizationv1.ResourceAttributes{Namespace: "default", Verb: "create", Group: "", Version: "v1", Resource: "pods", Subresource: "portforward", Name: name}
	if spec.User != "alice" || !reflect.DeepEqual(spec.Groups, []string{"devs", "system:authenticated"}) || *spec.ResourceAttributes != want {
		t.Errorf("review for %s: user %q groups %q attributes %+v; want alice, [devs system:authenticated], %+v", name, spec.User, spec.Groups, *spec.ResourceAttributes, want)
	}
	if reviews[0].Status.Allowed != wantAllowed {
		t.Errorf("review for %s answered allowed=%v, want %v", name, reviews[0].Status.Allowed, wantAllowed)
	}
}

// forbiddenMessage is the API server's wording for alice and pod name.
func forbiddenMessage(name string) string {
	return `pods "` + name + `" is forbidden: User "alice" cannot create resource "pods/portforward" in API group "" in the namespace "default": ` + rbacReason
}

// TestAuthorization runs port-forwards over the three protocols through the
// gateway with SubjectAccessReviews answered by the dev API server: allowed
// ones carry bytes, denied ones get the API server's 403 Status and never
// reach the kubelet, answers are cached, read-only calls reach the API
// server as the impersonated caller, and callers' own impersonation is refused.
func TestAuthorization(t *testing.T) {
	e := newEnv(t, func(o *options.Options) {
		// Long enough that nothing expires during the test.
		o.Authorization.WebhookCacheAuthorizedTTL = 5 * time.Minute
		o.Authorization.WebhookCacheUnauthorizedTTL = 5 * time.Minute
	})
	e.cluster.APIServer.SetSubjectAccessReviewer(denyPods)
	for _, name := range []string{"ok-spdy", "ok-tunnel", "ok-legacy", "deny-spdy", "deny-tunnel", "deny-legacy", "deny-kubectl", "sar-error"} {
		e.addPod(devcluster.Pod{Name: name, Ports: map[int32]string{hashPort: e.hash.Addr()}})
	}

	t.Run("allowed", func(t *testing.T) {
		t.Run("client-go SPDY (POST)", func(t *testing.T) {
			f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "ok-spdy")), hashPort)
			c, err := f.dial()
			if err != nil {
				t.Fatal(err)
			}
			transfer(t, c, 1<<20, 1<<20) //nolint:errcheck // reported by transfer
			_ = c.Close()
			e.checkReview(t, "ok-spdy", true)
		})
		t.Run("client-go WebSocket tunnel (GET)", func(t *testing.T) {
			f := startForward(t, dialer(t, dialTunnel, e.cfg, e.pfURL("", "ok-tunnel")), hashPort)
			c, err := f.dial()
			if err != nil {
				t.Fatal(err)
			}
			transfer(t, c, 1<<20, 1<<20) //nolint:errcheck // reported by transfer
			_ = c.Close()
			e.checkReview(t, "ok-tunnel", true)
		})
		t.Run("legacy WebSocket v4 (GET)", func(t *testing.T) {
			c, resp, err := e.dialLegacy("ok-legacy", hashPort, v4Binary, nil)
			if err != nil {
				t.Fatalf("legacy dial: %v (response %v)", err, resp)
			}
			transfer(t, c, 1<<20, 1<<20) //nolint:errcheck // reported by transfer
			_ = c.Close()
			e.checkReview(t, "ok-legacy", true)
		})
	})

	t.Run("denied", func(t *testing.T) {
		tests := []struct {
			name   string
			pod    string
			method string
			query  string
			header http.Header
			kind   dialerKind // "" for none: the legacy protocol has no client-go dialer
		}{
			{name: "client-go SPDY (POST)", pod: "deny-spdy", method: "POST", header: spdyUpgrade, kind: dialSPDY},
			{name: "client-go WebSocket tunnel (GET)", pod: "deny-tunnel", method: "GET", header: tunnelUpgrade, kind: dialTunnel},
			{name: "legacy WebSocket v4 (GET)", pod: "deny-legacy", method: "GET", query: "?ports=7000", header: legacyUpgrade},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.raw(t, tt.method, pf(tt.pod)+tt.query, tt.header, true)
				if r.code != 403 || r.status == nil {
					t.Fatalf("answered %d %q, want a 403 Status", r.code, r.body)
				}
				if st := r.status; st.Code != 403 || st.Reason != metav1.StatusReasonForbidden || st.Message != forbiddenMessage(tt.pod) ||
					st.Details == nil || st.Details.Name != tt.pod || st.Details.Kind != "pods" {
					t.Errorf("Status %d %q %q details %+v;\nwant 403 %q %q for pods %q", st.Code, st.Reason, st.Message, st.Details,
						metav1.StatusReasonForbidden, forbiddenMessage(tt.pod), tt.pod)
				}
				e.checkReview(t, tt.pod, false)
				if tt.kind != "" {
					// What kubectl shows: the Status message.
					conn, _, err := dialer(t, tt.kind, e.cfg, e.pfURL("", tt.pod)).Dial(portforward.PortForwardProtocolV1Name)
					if err == nil {
						_ = conn.Close()
						t.Fatal("client-go dial succeeded, want the 403")
					}
					if !strings.Contains(err.Error(), forbiddenMessage(tt.pod)) {
						t.Errorf("client-go error %q, want it to contain %q", err, forbiddenMessage(tt.pod))
					}
				} else {
					_, resp, err := e.dialLegacy(tt.pod, hashPort, v4Binary, nil)
					if err == nil || resp == nil || resp.StatusCode != 403 {
						t.Errorf("legacy dial: err %v response %v, want a 403", err, resp)
					}
				}
				// The denial was cached: the repeated requests made no new review.
				e.checkReview(t, tt.pod, false)
			})
		}
		allowed := 0
		for _, r := range e.cluster.Kubelet.Requests() {
			if strings.Contains(r.URL, "/deny-") {
				t.Errorf("the kubelet received %s %s for a denied pod", r.Method, r.URL)
			}
			if strings.Contains(r.URL, "/ok-") {
				allowed++
			}
		}
		if allowed < 3 {
			t.Errorf("the kubelet recorded %d requests for the allowed pods, want at least 3", allowed)
		}
	})

	t.Run("kubectl shows the refusals", func(t *testing.T) {
		for _, tc := range []struct {
			name, pod string
			minor     int
			flags     []string
			want      string
		}{
			{name: "1.27 (SPDY) denied", pod: "deny-kubectl", minor: 27, want: forbiddenMessage("deny-kubectl")},
			{name: "1.33 (WebSocket, then SPDY) denied", pod: "deny-kubectl", minor: 33, want: forbiddenMessage("deny-kubectl")},
			// The first refused call is discovery, which client-go reads with
			// Result.Raw(), which does not decode a Status body: kubectl
			// prints "Forbidden: unknown" there, for any server.
			{name: "1.33 with --as", pod: "ok-spdy", minor: 33, flags: []string{"--as", "admin"},
				want: "Error from server (Forbidden)"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, run, err := e.kubectlPortForward(t, kubectlBinary(t, tc.minor), tc.pod, hashPort, tc.flags...)
				if err == nil {
					t.Fatal("kubectl port-forward started forwarding, want it to fail")
				}
				if !strings.Contains(run.Stderr.String(), tc.want) {
					t.Errorf("kubectl stderr %q, want it to contain %q", run.Stderr, tc.want)
				}
			})
		}
	})

	t.Run("allowed answers are cached", func(t *testing.T) {
		for _, kind := range []dialerKind{dialSPDY, dialTunnel} {
			f := startForward(t, dialer(t, kind, e.cfg, e.pfURL("", "ok-spdy")), hashPort)
			f.stop()
		}
		e.checkReview(t, "ok-spdy", true) // still the one review of the first session
	})

	t.Run("a failed review is a 500", func(t *testing.T) {
		r := e.raw(t, "POST", pf("sar-error"), spdyUpgrade, true)
		expectStatus(t, r, 500, metav1.StatusReasonInternalError, "Internal error occurred: the SubjectAccessReview for this request failed")
		if r.status != nil && r.status.Message != "Internal error occurred: the SubjectAccessReview for this request failed" {
			t.Errorf("message %q says more than it should", r.status.Message)
		}
	})

	t.Run("read-only calls reach the API server as the caller", func(t *testing.T) {
		cs, err := kubernetes.NewForConfig(withCallerCredentials(e.cfg)) // also sends a bearer token
		if err != nil {
			t.Fatal(err)
		}
		before := len(e.cluster.APIServer.Requests())
		if _, err := cs.CoreV1().Pods("default").Get(context.Background(), "ok-spdy", metav1.GetOptions{}); err != nil {
			t.Fatalf("GET pod through the gateway: %v", err)
		}
		var relayed int
		for _, r := range e.cluster.APIServer.Requests()[before:] {
			if !strings.HasPrefix(r.Path, "/api/v1/namespaces/default/pods/ok-spdy") {
				continue
			}
			relayed++
			h := r.Header
			if u, g := h.Values("Impersonate-User"), h.Values("Impersonate-Group"); !reflect.DeepEqual(u, []string{"alice"}) || !reflect.DeepEqual(g, []string{"devs", "system:authenticated"}) {
				t.Errorf("relayed GET impersonated user %q groups %q, want [alice] [devs system:authenticated]", u, g)
			}
			if v := h.Get(credentialIDExtra); !strings.HasPrefix(v, "X509SHA256=") {
				t.Errorf("relayed GET: %s %q, want the caller's certificate hash", credentialIDExtra, v)
			}
			if a := h.Get("Authorization"); a != "" {
				t.Errorf("relayed GET carried Authorization %q; the gateway authenticates with its client certificate", a)
			}
			if x := h.Get("X-Remote-User"); x != "" {
				t.Errorf("relayed GET carried X-Remote-User %q", x)
			}
		}
		if relayed != 1 {
			t.Errorf("the API server saw %d relayed GETs of the pod, want 1", relayed)
		}
	})

	t.Run("a caller's own Impersonate-* headers are refused", func(t *testing.T) {
		const msg = "forbidden: impersonation through pfgateway is not allowed (the request carries Impersonate-User); authenticate as the user instead"
		reviews, requests := len(e.cluster.APIServer.SubjectAccessReviews()), len(e.cluster.APIServer.Requests())
		imp := http.Header{"Impersonate-User": {"admin"}}
		for _, tc := range []struct {
			method, path string
			header       http.Header
		}{
			{"GET", "/api/v1/namespaces/default/pods/ok-spdy", imp},
			{"POST", pf("ok-spdy"), merge(spdyUpgrade, imp)},
			{"GET", pf("ok-tunnel"), merge(tunnelUpgrade, imp)},
		} {
			r := e.raw(t, tc.method, tc.path, tc.header, true)
			if r.code != 403 || r.status == nil || r.status.Reason != metav1.StatusReasonForbidden || r.status.Message != msg {
				t.Errorf("%s %s with Impersonate-User: %d %q, want a 403 Status %q", tc.method, tc.path, r.code, r.body, msg)
			}
		}
		if n := len(e.cluster.APIServer.SubjectAccessReviews()) - reviews; n != 0 {
			t.Errorf("%d SubjectAccessReviews for refused requests, want 0", n)
		}
		for _, r := range e.cluster.APIServer.Requests()[requests:] {
			if strings.HasPrefix(r.Path, "/api/v1/namespaces/default/pods/ok-spdy") {
				t.Errorf("the refused GET reached the API server: %s %s", r.Method, r.Path)
			}
		}
	})
}

// TestAuthorizationAlwaysAllow: with --authorization-mode=AlwaysAllow no
// review is made and a pod the cluster would deny is forwarded to.
func TestAuthorizationAlwaysAllow(t *testing.T) {
	e := newEnv(t, func(o *options.Options) { o.Authorization.Mode = options.AuthorizationModeAlwaysAllow })
	e.cluster.APIServer.SetSubjectAccessReviewer(denyPods)
	e.addPod(devcluster.Pod{Name: "deny-me", Ports: map[int32]string{hashPort: e.hash.Addr()}})
	f := startForward(t, dialer(t, dialSPDY, e.cfg, e.pfURL("", "deny-me")), hashPort)
	c, err := f.dial()
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, c, 1<<20, 1<<20) //nolint:errcheck // reported by transfer
	_ = c.Close()
	if n := len(e.cluster.APIServer.SubjectAccessReviews()); n != 0 {
		t.Errorf("%d SubjectAccessReviews with AlwaysAllow, want 0", n)
	}
}

// merge returns the union of header sets, later ones winning.
func merge(hs ...http.Header) http.Header {
	out := http.Header{}
	for _, h := range hs {
		for k, v := range h {
			out[k] = v
		}
	}
	return out
}
