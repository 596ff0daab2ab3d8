package router

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

type authenticatorFunc func(*http.Request) (*authenticator.Response, bool, error)

func (f authenticatorFunc) AuthenticateRequest(r *http.Request) (*authenticator.Response, bool, error) {
	return f(r)
}

// allowBob authenticates requests carrying "X-Test-User: bob".
var allowBob = authenticatorFunc(func(r *http.Request) (*authenticator.Response, bool, error) {
	if r.Header.Get("X-Test-User") != "bob" {
		return nil, false, nil
	}
	return &authenticator.Response{User: &user.DefaultInfo{Name: "bob"}}, true, nil
})

func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(name + " " + ClusterFrom(r.Context()) + " " + r.URL.Path))
	})
}

func TestRoutes(t *testing.T) {
	h := New(Config{Clusters: []string{"default", "b"}, Authenticator: allowBob, Authorizer: allowAll, PortForward: named("pf"), ReadOnly: named("ro")})
	tests := []struct {
		name       string
		method     string
		path       string
		anonymous  bool
		wantCode   int
		wantBody   string // prefix of the body for 200, Status message substring otherwise
		wantReason metav1.StatusReason
	}{
		{name: "should forward SPDY portforward", method: "POST", path: "/api/v1/namespaces/ns/pods/p/portforward", wantCode: 200, wantBody: "pf default /api/v1/namespaces/ns/pods/p/portforward"},
		{name: "should forward WebSocket portforward", method: "GET", path: "/api/v1/namespaces/ns/pods/p/portforward", wantCode: 200, wantBody: "pf default"},
		{name: "should strip the cluster prefix", method: "POST", path: "/clusters/b/api/v1/namespaces/ns/pods/p/portforward", wantCode: 200, wantBody: "pf b /api/v1/namespaces/ns/pods/p/portforward"},
		{name: "should serve the read-only pod GET", method: "GET", path: "/clusters/b/api/v1/namespaces/ns/pods/p", wantCode: 200, wantBody: "ro b /api/v1/namespaces/ns/pods/p"},
		{name: "should serve version and discovery", method: "GET", path: "/version", wantCode: 200, wantBody: "ro default /version"},
		{name: "should serve group discovery", method: "GET", path: "/apis/apps/v1", wantCode: 200, wantBody: "ro"},
		{name: "should serve pods by selector", method: "GET", path: "/api/v1/namespaces/ns/pods?labelSelector=app%3Dx", wantCode: 200, wantBody: "ro"},
		{name: "should serve a deployment", method: "GET", path: "/apis/apps/v1/namespaces/ns/deployments/d", wantCode: 200, wantBody: "ro"},
		{name: "should serve a service", method: "GET", path: "/api/v1/namespaces/ns/services/s", wantCode: 200, wantBody: "ro"},
		{name: "should refuse a pod list without selector", method: "GET", path: "/api/v1/namespaces/ns/pods", wantCode: 403, wantBody: "only serves port-forward", wantReason: metav1.StatusReasonForbidden},
		{name: "should refuse secrets", method: "GET", path: "/api/v1/namespaces/ns/secrets/s", wantCode: 403, wantBody: "only serves port-forward", wantReason: metav1.StatusReasonForbidden},
		{name: "should refuse exec", method: "POST", path: "/api/v1/namespaces/ns/pods/p/exec", wantCode: 403, wantBody: "only serves port-forward", wantReason: metav1.StatusReasonForbidden},
		{name: "should refuse writes", method: "DELETE", path: "/api/v1/namespaces/ns/pods/p", wantCode: 403, wantBody: "only serves port-forward", wantReason: metav1.StatusReasonForbidden},
		{name: "should answer 405 for another method on portforward", method: "PUT", path: "/api/v1/namespaces/ns/pods/p/portforward", wantCode: 405, wantReason: metav1.StatusReasonMethodNotAllowed},
		{name: "should answer 404 outside the API", method: "GET", path: "/ui", wantCode: 404, wantReason: metav1.StatusReasonNotFound},
		{name: "should answer 404 for an unknown cluster", method: "POST", path: "/clusters/nope/api/v1/namespaces/ns/pods/p/portforward", wantCode: 404, wantBody: `clusters "nope" not found`, wantReason: metav1.StatusReasonNotFound},
		{name: "should answer 404 for a bare cluster prefix", method: "GET", path: "/clusters/b", wantCode: 404, wantReason: metav1.StatusReasonNotFound},
		{name: "should refuse an invalid cluster name", method: "GET", path: "/clusters/B_x/version", wantCode: 400, wantReason: metav1.StatusReasonBadRequest},
		{name: "should refuse unclean paths without redirecting", method: "GET", path: "/api/v1/namespaces/ns/pods/../secrets/s", wantCode: 404, wantReason: metav1.StatusReasonNotFound},
		{name: "should answer 401 before anything else", method: "POST", path: "/clusters/nope/api/v1/namespaces/ns/pods/p/portforward", anonymous: true, wantCode: 401, wantBody: "Unauthorized", wantReason: metav1.StatusReasonUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://gw"+tt.path, nil)
			// httptest cleans nothing; keep the raw path as sent.
			req.URL.Path = strings.SplitN(tt.path, "?", 2)[0]
			if !tt.anonymous {
				req.Header.Set("X-Test-User", "bob")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tt.wantCode {
				t.Fatalf("code %d, want %d; body %s", w.Code, tt.wantCode, w.Body)
			}
			if tt.wantCode == 200 {
				if !strings.HasPrefix(w.Body.String(), tt.wantBody) {
					t.Fatalf("body %q, want prefix %q", w.Body, tt.wantBody)
				}
				return
			}
			var st metav1.Status
			if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.Kind != "Status" {
				t.Fatalf("body is not a Status: %q (%v)", w.Body, err)
			}
			if st.Code != int32(tt.wantCode) || st.Reason != tt.wantReason || !strings.Contains(st.Message, tt.wantBody) {
				t.Fatalf("status %+v, want code %d reason %s message containing %q", st, tt.wantCode, tt.wantReason, tt.wantBody)
			}
		})
	}
}

func TestRouterRemovesAuthorizationHeader(t *testing.T) {
	var seen http.Header
	h := New(Config{Clusters: []string{"default"}, Authenticator: allowBob, Authorizer: allowAll, ReadOnly: named("ro"),
		PortForward: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Clone() })})
	req := httptest.NewRequest("POST", "/api/v1/namespaces/ns/pods/p/portforward", nil)
	req.Header.Set("X-Test-User", "bob")
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("X-Remote-User", "admin")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if seen == nil {
		t.Fatal("the port-forward handler was not reached")
	}
	if seen.Get("Authorization") != "" || seen.Get("X-Remote-User") != "" {
		t.Fatalf("credential headers survived authentication: %v", seen)
	}
}

func FuzzSplitClusterPath(f *testing.F) {
	for _, s := range []string{"/clusters/a/api", "/clusters//x", "/clusters/a", "/api/v1", "/clusters/a/", "/clusters/" + strings.Repeat("a", 300) + "/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, rest, ok, err := SplitClusterPath(p)
		if !ok {
			if err != nil || rest != p {
				t.Fatalf("no prefix but rest=%q err=%v", rest, err)
			}
			return
		}
		if err != nil {
			return
		}
		if name == "" || strings.Contains(name, "/") || len(name) > 253 {
			t.Fatalf("bad name %q", name)
		}
		if !strings.HasPrefix(rest, "/") || "/clusters/"+name+rest != p {
			t.Fatalf("split %q into %q + %q", p, name, rest)
		}
	})
}
