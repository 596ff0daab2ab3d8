package router

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

var fuzzMethods = []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "get"}

// FuzzRoutes sends fuzzed requests through the whole chain (New: cluster
// prefix, request info, authentication, impersonation refusal, known
// cluster, port-forward authorization, the route table) and checks what
// came out: a port-forward reaches its handler only on its exact path and
// authorized for the very pod it names, read-only calls only for GET, and
// everything else is a 4xx metav1.Status.
//
// flags: bit 0 authenticated, bit 1 with an Impersonate-User header.
func FuzzRoutes(f *testing.F) {
	for _, s := range []struct {
		method  byte
		path, q string
		flags   byte
	}{
		{1, "/api/v1/namespaces/default/pods/nginx-7c5ddbdf54-2xkqz/portforward", "", 1},
		{0, "/api/v1/namespaces/default/pods/nginx/portforward", "ports=8080&ports=9090", 1},
		{1, "/clusters/b/api/v1/namespaces/kube-system/pods/coredns-1/portforward", "", 1},
		{0, "/clusters/default/api/v1/namespaces/ns/pods/p", "", 1},
		{0, "/api/v1/namespaces/ns/pods", "labelSelector=app%3Dnginx%2Ctier%3Dweb", 1},
		{0, "/apis/apps/v1/namespaces/ns/deployments/web", "", 1},
		{0, "/api/v1/namespaces/ns/services/web", "", 1},
		{0, "/version", "timeout=32s", 1},
		{3, "/api/v1/namespaces/ns/pods/p", "", 1},
		{0, "/apis", "", 1},
		{0, "/api/v1/namespaces/ns/pods/a%2Fb/portforward", "", 1},
		{0, "/api/v1/namespaces/ns/pods/p/../secrets/s", "", 1},
		{2, "/api/v1/namespaces/ns/pods/p/portforward", "", 1},
		{1, "/api/v1/namespaces/ns/pods/p/exec", "command=sh&stdin=true", 1},
		{1, "/api/v1/namespaces/ns/pods/p/portforward", "", 0},
		{1, "/api/v1/namespaces/ns/pods/p/portforward", "", 3},
		{1, "/clusters/nope/api/v1/namespaces/ns/pods/p/portforward", "", 1},
		{0, "/clusters/B_x/version", "", 1},
		{0, "/clusters//api", "", 1},
		{0, "//api/v1", "", 1},
		{0, "*", "", 1},
	} {
		f.Add(s.method, s.path, s.q, s.flags)
	}
	f.Fuzz(func(t *testing.T, m byte, rawPath, rawQuery string, flags byte) {
		target := rawPath
		if rawQuery != "" {
			target += "?" + rawQuery
		}
		// What net/http's server does with the request line; what it would
		// refuse never reaches the handler.
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		method := fuzzMethods[int(m)%len(fuzzMethods)]

		var asked []authorizer.Attributes
		var pfVars map[string]string
		var pfPath, pfCluster string
		roHit := false
		h := New(Config{
			Clusters: []string{"default", "b"}, Authenticator: allowBob,
			Authorizer: authorizer.AuthorizerFunc(func(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
				asked = append(asked, a)
				return authorizer.DecisionAllow, "", nil
			}),
			PortForward: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				pfVars, pfPath, pfCluster = mux.Vars(r), r.URL.Path, ClusterFrom(r.Context())
			}),
			ReadOnly: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { roHit = true }),
		})
		req := httptest.NewRequest(method, "http://gw/", nil)
		req.URL, req.RequestURI = u, target
		if flags&1 != 0 {
			req.Header.Set("X-Test-User", "bob")
		}
		if flags&2 != 0 {
			req.Header.Set("Impersonate-User", "admin")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)

		if (pfVars != nil || roHit) && flags&3 != 1 {
			t.Fatalf("%s %q reached a handler with flags %b (anonymous or impersonating)", method, target, flags)
		}
		if pfVars != nil {
			if method != "GET" && method != "POST" {
				t.Fatalf("port-forward reached by %s %q", method, target)
			}
			ns, name := pfVars["namespace"], pfVars["name"]
			if ns == "" || name == "" || strings.Contains(ns, "/") || strings.Contains(name, "/") {
				t.Fatalf("port-forward reached with namespace %q name %q from %q", ns, name, target)
			}
			want := "/api/v1/namespaces/" + ns + "/pods/" + name + "/portforward"
			if pfPath != want || (u.Path != want && u.Path != "/clusters/"+pfCluster+want) || (pfCluster != "default" && pfCluster != "b") {
				t.Fatalf("port-forward reached on %q (cluster %q, handler saw %q), want %q", u.Path, pfCluster, pfPath, want)
			}
			if len(asked) != 1 {
				t.Fatalf("port-forward %q reached after %d authorizations, want 1", target, len(asked))
			}
			if a := asked[0]; a.GetNamespace() != ns || a.GetName() != name || a.GetVerb() != "create" ||
				a.GetResource() != "pods" || a.GetSubresource() != "portforward" {
				t.Fatalf("authorized %s %s/%s %s/%s, reached %s/%s", a.GetVerb(), a.GetNamespace(), a.GetName(), a.GetResource(), a.GetSubresource(), ns, name)
			}
			return
		}
		if roHit {
			if method != "GET" {
				t.Fatalf("read-only handler reached by %s %q", method, target)
			}
			return
		}
		var st metav1.Status
		if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.Kind != "Status" {
			t.Fatalf("%s %q: code %d, body is not a Status: %q (%v)", method, target, w.Code, w.Body, err)
		}
		if st.Code != int32(w.Code) || st.Reason == "" || w.Code < 400 || w.Code >= 500 || st.Status != metav1.StatusFailure {
			t.Fatalf("%s %q: code %d, Status %+v; want a 4xx failure Status with a reason", method, target, w.Code, st)
		}
	})
}
