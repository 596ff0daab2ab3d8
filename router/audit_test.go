package router

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/endpoints/request"
)

// chainAuditor notes, for each request, what its two filters saw.
type chainAuditor struct{ seen []string }

func (a *chainAuditor) WithRefused(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := request.UserFrom(r.Context())
		ri, _ := request.RequestInfoFrom(r.Context())
		a.seen = append(a.seen, "refused-filter user="+u.GetName()+" cluster="+ClusterFrom(r.Context())+" subresource="+ri.Subresource)
		next.ServeHTTP(w, r)
	})
}

func (a *chainAuditor) WithFailedAuthentication(failed http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.seen = append(a.seen, "failed-authn")
		failed.ServeHTTP(w, r)
	})
}

// TestAuditPlacement: the audit filter runs after authentication (it sees
// the user, the request info and the cluster) and before the known-cluster
// check (unknown clusters are audited); failed authentications go through
// the audit's wrapper of the 401 handler.
func TestAuditPlacement(t *testing.T) {
	a := &chainAuditor{}
	h := New(Config{Clusters: []string{"default"}, Authenticator: allowBob, Authorizer: allowAll, PortForward: named("pf"), ReadOnly: named("ro"), Audit: a})
	for _, tc := range []struct {
		path, user string
		code       int
		seen       string
	}{
		{"/api/v1/namespaces/ns/pods/p/portforward", "bob", 200, "refused-filter user=bob cluster=default subresource=portforward"},
		{"/clusters/nope/api/v1/namespaces/ns/pods/p/portforward", "bob", 404, "refused-filter user=bob cluster=nope subresource=portforward"},
		{"/api/v1/namespaces/ns/pods/p/portforward", "", 401, "failed-authn"},
	} {
		a.seen = nil
		req := httptest.NewRequest(http.MethodPost, tc.path, nil)
		if tc.user != "" {
			req.Header.Set("X-Test-User", tc.user)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code || strings.Join(a.seen, ";") != tc.seen {
			t.Errorf("%s as %q: %d, audit saw %q; want %d, %q", tc.path, tc.user, rec.Code, a.seen, tc.code, tc.seen)
		}
	}
}
