package router

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

var allowAll = authorizer.AuthorizerFunc(func(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
	return authorizer.DecisionAllow, "", nil
})

// TestEveryPortForwardIsAuthorized checks the authorization filter, which
// recognises port-forwards by the API server's RequestInfo, and the route
// table, which matches them with gorilla/mux, agree: no request reaches
// the port-forward handler without the authorizer being asked about that
// very namespace and pod.
func TestEveryPortForwardIsAuthorized(t *testing.T) {
	reachable := map[string]bool{ // for GET and POST
		"/api/v1/namespaces/ns/pods/p/portforward":               true,
		"/clusters/b/api/v1/namespaces/ns/pods/p/portforward":    true,
		"/api/v1/namespaces/ns/pods/p/portforward/":              false,
		"/api/v1/namespaces/ns/pods/p/portforward?ports=80":      true,
		"/api/v1/namespaces/ns/pods/a%2Fb/portforward":           true, // a pod literally named a%2Fb
		"/api/v1/namespaces/namespaces/pods/pods/portforward":    true,
		"/api/v1/namespaces/ns/pods/portforward/portforward":     true,
		"/api/v1/namespaces/ns/pods/p q/portforward":             true,
		"/api/v1/namespaces/ns/pods/p/portforward/x":             false,
		"/api/v1/namespaces//pods/p/portforward":                 false,
		"/api/v1/namespaces/ns/pods//portforward":                false,
		"/api/v1/pods/p/portforward":                             false,
		"/api//v1/namespaces/ns/pods/p/portforward":              false,
		"/apis/v1/namespaces/ns/pods/p/portforward":              false,
		"/api/v1/namespaces/ns/pods/p/portforward?":              true,
		"/api/v1/namespaces/ns/pods/p/portforward/../exec":       false,
		"/clusters/b/../api/v1/namespaces/ns/pods/p/portforward": false,
	}
	for _, method := range []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"} {
		for p, reach := range reachable {
			t.Run(method+" "+p, func(t *testing.T) {
				var asked []authorizer.Attributes
				var reached map[string]string
				h := New(Config{
					Clusters: []string{"default", "b"}, Authenticator: allowBob, ReadOnly: named("ro"),
					Authorizer: authorizer.AuthorizerFunc(func(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
						asked = append(asked, a)
						return authorizer.DecisionAllow, "", nil
					}),
					PortForward: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { reached = mux.Vars(r) }),
				})
				req := httptest.NewRequest(method, "http://gw/", nil)
				req.URL.Path, req.URL.RawQuery, _ = strings.Cut(p, "?")
				req.Header.Set("X-Test-User", "bob")
				h.ServeHTTP(httptest.NewRecorder(), req)
				if mustReach := (method == "GET" || method == "POST") && reach; mustReach != (reached != nil) {
					t.Fatalf("port-forward handler reached: %v, want %v", reached != nil, mustReach)
				}
				if reached == nil {
					return
				}
				if len(asked) != 1 {
					t.Fatalf("reached the port-forward handler for %v after %d authorizations, want 1", reached, len(asked))
				}
				a := asked[0]
				if a.GetNamespace() != reached["namespace"] || a.GetName() != reached["name"] || a.GetVerb() != "create" ||
					a.GetResource() != "pods" || a.GetSubresource() != "portforward" || a.GetUser().GetName() != "bob" {
					t.Errorf("authorized %s %s/%s %s/%s for %v; reached with %v", a.GetVerb(), a.GetNamespace(), a.GetName(), a.GetResource(), a.GetSubresource(), a.GetUser(), reached)
				}
			})
		}
	}
}

// TestImpersonationRefusedInChainOrder: authentication first (an anonymous
// caller learns nothing), then the known cluster, then the refusal, before
// the authorizer is asked or any route runs.
func TestImpersonationRefusedInChainOrder(t *testing.T) {
	const pfPath = "/api/v1/namespaces/ns/pods/p/portforward"
	tests := []struct {
		name       string
		path       string
		anonymous  bool
		wantCode   int
		wantReason metav1.StatusReason
		wantMsg    string
	}{
		{name: "should answer 401 to an anonymous caller", path: pfPath, anonymous: true, wantCode: 401, wantReason: metav1.StatusReasonUnauthorized, wantMsg: "Unauthorized"},
		{name: "should answer 404 for an unknown cluster", path: "/clusters/nope" + pfPath, wantCode: 404, wantReason: metav1.StatusReasonNotFound, wantMsg: `clusters "nope" not found`},
		{name: "should refuse on portforward", path: pfPath, wantCode: 403, wantReason: metav1.StatusReasonForbidden,
			wantMsg: "forbidden: impersonation through pfgateway is not allowed (the request carries Impersonate-User); authenticate as the user instead"},
		{name: "should refuse on read-only calls", path: "/api/v1/namespaces/ns/pods/p", wantCode: 403, wantReason: metav1.StatusReasonForbidden,
			wantMsg: "impersonation through pfgateway is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asked, reached := 0, false
			h := New(Config{
				Clusters: []string{"default"}, Authenticator: allowBob,
				Authorizer: authorizer.AuthorizerFunc(func(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
					asked++
					return authorizer.DecisionAllow, "", nil
				}),
				PortForward: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }),
				ReadOnly:    http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }),
			})
			req := httptest.NewRequest("GET", "http://gw"+tt.path, nil)
			req.Header.Set("Impersonate-User", "admin")
			if !tt.anonymous {
				req.Header.Set("X-Test-User", "bob")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			var st metav1.Status
			if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || w.Code != tt.wantCode {
				t.Fatalf("code %d body %s, want %d", w.Code, w.Body, tt.wantCode)
			}
			if st.Reason != tt.wantReason || !strings.Contains(st.Message, tt.wantMsg) {
				t.Errorf("Status %q %q, want %q containing %q", st.Reason, st.Message, tt.wantReason, tt.wantMsg)
			}
			if asked != 0 || reached {
				t.Errorf("authorizer asked %d times, handler reached %v; want neither", asked, reached)
			}
		})
	}
}
