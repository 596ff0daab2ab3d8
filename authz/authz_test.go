package authz

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

var alice = &user.DefaultInfo{Name: "alice", UID: "u-1", Groups: []string{"devs", "system:authenticated"}}

// newRequest is method path as the router's filters leave it: with the
// RequestInfo the API server's resolver makes and, unless u is nil, a user.
func newRequest(t *testing.T, method, path string, u user.Info) *http.Request {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	resolver := &request.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")}
	info, err := resolver.NewRequestInfo(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx := request.WithRequestInfo(req.Context(), info)
	if u != nil {
		ctx = request.WithUser(ctx, u)
	}
	return req.WithContext(ctx)
}

func TestPortForwardAttributes(t *testing.T) {
	want := func(ns, name string) *authorizer.AttributesRecord {
		return &authorizer.AttributesRecord{
			User: alice, Verb: "create", Namespace: ns, APIVersion: "v1", Resource: "pods", Subresource: "portforward",
			Name: name, ResourceRequest: true, Path: "/api/v1/namespaces/" + ns + "/pods/" + name + "/portforward",
		}
	}
	tests := []struct {
		name   string
		method string
		path   string
		want   *authorizer.AttributesRecord // nil: not a port-forward
	}{
		{name: "should ask create for SPDY's POST", method: "POST", path: "/api/v1/namespaces/default/pods/web/portforward", want: want("default", "web")},
		{name: "should ask create, not get, for WebSocket's GET", method: "GET", path: "/api/v1/namespaces/team-a/pods/db-0/portforward", want: want("team-a", "db-0")},
		{name: "should ask create for the legacy protocol's GET with ports", method: "GET", path: "/api/v1/namespaces/default/pods/web/portforward?ports=80", want: want("default", "web")},
		{name: "should not ask for PUT (answered 405 by the routes)", method: "PUT", path: "/api/v1/namespaces/default/pods/web/portforward"},
		{name: "should not ask for the pod GET", method: "GET", path: "/api/v1/namespaces/default/pods/web"},
		{name: "should not ask for exec", method: "POST", path: "/api/v1/namespaces/default/pods/web/exec"},
		{name: "should not ask for another group's portforward", method: "POST", path: "/apis/x.io/v1/namespaces/default/pods/web/portforward"},
		{name: "should not ask for services/portforward", method: "POST", path: "/api/v1/namespaces/default/services/web/portforward"},
		{name: "should not ask for a non-resource path", method: "GET", path: "/version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := PortForwardAttributes(newRequest(t, tt.method, tt.path, alice))
			if tt.want == nil {
				if ok {
					t.Fatalf("got attributes %+v, want none", got)
				}
				return
			}
			if !ok {
				t.Fatal("not recognised as a port-forward")
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("attributes\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestWithPortForwardAuthorization(t *testing.T) {
	const pfPath = "/api/v1/namespaces/default/pods/web/portforward"
	const denied = `pods "web" is forbidden: User "alice" cannot create resource "pods/portforward" in API group "" in the namespace "default"`
	tests := []struct {
		name       string
		method     string
		path       string
		noUser     bool
		nilAuthz   bool
		decision   authorizer.Decision
		reason     string
		err        error
		wantAsked  bool
		wantCode   int
		wantReason metav1.StatusReason
		wantMsg    string
	}{
		{name: "should pass an allowed POST", method: "POST", path: pfPath, decision: authorizer.DecisionAllow, wantAsked: true, wantCode: 200},
		{name: "should pass an allowed GET", method: "GET", path: pfPath, decision: authorizer.DecisionAllow, wantAsked: true, wantCode: 200},
		{name: "should pass an allow that came with an error, as the API server does", method: "POST", path: pfPath,
			decision: authorizer.DecisionAllow, err: errors.New("partial"), wantAsked: true, wantCode: 200},
		{name: "should refuse a denial in the API server's words with the reason", method: "POST", path: pfPath,
			decision: authorizer.DecisionDeny, reason: "RBAC: no binding", wantAsked: true,
			wantCode: 403, wantReason: metav1.StatusReasonForbidden, wantMsg: denied + ": RBAC: no binding"},
		{name: "should refuse no opinion without a reason", method: "GET", path: pfPath,
			decision: authorizer.DecisionNoOpinion, wantAsked: true,
			wantCode: 403, wantReason: metav1.StatusReasonForbidden, wantMsg: denied},
		{name: "should answer 500 when the review fails", method: "POST", path: pfPath,
			decision: authorizer.DecisionNoOpinion, err: errors.New("connection refused"), wantAsked: true,
			wantCode: 500, wantReason: metav1.StatusReasonInternalError, wantMsg: "Internal error occurred: the SubjectAccessReview for this request failed"},
		{name: "should name an empty user when there is none", method: "POST", path: pfPath, noUser: true,
			decision: authorizer.DecisionNoOpinion, wantAsked: true, wantCode: 403, wantReason: metav1.StatusReasonForbidden,
			wantMsg: `pods "web" is forbidden: User "" cannot create resource "pods/portforward" in API group "" in the namespace "default"`},
		{name: "should refuse every port-forward without an authorizer", method: "POST", path: pfPath, nilAuthz: true,
			wantCode: 500, wantReason: metav1.StatusReasonInternalError, wantMsg: "Internal error occurred: no authorizer is configured"},
		{name: "should not ask about read-only calls", method: "GET", path: "/api/v1/namespaces/default/pods/web",
			decision: authorizer.DecisionDeny, wantCode: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []authorizer.Attributes
			var a authorizer.UnconditionalAuthorizer = authorizer.AuthorizerFunc(func(_ context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
				asked = append(asked, attrs)
				return tt.decision, tt.reason, tt.err
			})
			if tt.nilAuthz {
				a = nil
			}
			reached := false
			h := WithPortForwardAuthorization(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { reached = true }), a)
			u := user.Info(alice)
			if tt.noUser {
				u = nil
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, newRequest(t, tt.method, tt.path, u))
			if rec.Code != tt.wantCode {
				t.Fatalf("code %d, want %d; body %s", rec.Code, tt.wantCode, rec.Body)
			}
			if reached != (tt.wantCode == 200) {
				t.Errorf("next reached %v, want %v", reached, tt.wantCode == 200)
			}
			if got := len(asked) == 1; got != tt.wantAsked {
				t.Errorf("authorizer asked %d times, want asked %v", len(asked), tt.wantAsked)
			}
			if tt.wantCode == 200 {
				return
			}
			var st metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Kind != "Status" {
				t.Fatalf("body is not a Status: %s", rec.Body)
			}
			if st.Code != int32(tt.wantCode) || st.Reason != tt.wantReason || st.Message != tt.wantMsg {
				t.Errorf("Status %d %q %q, want %d %q %q", st.Code, st.Reason, st.Message, tt.wantCode, tt.wantReason, tt.wantMsg)
			}
		})
	}
}

// TestNewWebhook runs the webhook authorizer against a SubjectAccessReview
// endpoint and checks the review it sends, its answers and the two caches.
func TestNewWebhook(t *testing.T) {
	var reviews atomic.Int32
	var last atomic.Pointer[authorizationv1.SubjectAccessReview]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/apis/authorization.k8s.io/v1/subjectaccessreviews" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		var sar authorizationv1.SubjectAccessReview
		if err := json.NewDecoder(r.Body).Decode(&sar); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		reviews.Add(1)
		last.Store(&sar)
		sar.Status.Allowed = sar.Spec.ResourceAttributes.Name == "web"
		if !sar.Status.Allowed {
			sar.Status.Reason = "not web"
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(&sar)
	}))
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewWebhook(cs.AuthorizationV1(), time.Minute, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ask := func(name string) (authorizer.Decision, string) {
		attrs, ok := PortForwardAttributes(newRequest(t, "GET", "/api/v1/namespaces/default/pods/"+name+"/portforward", alice))
		if !ok {
			t.Fatal("not a port-forward")
		}
		d, reason, err := a.Authorize(ctx, attrs)
		if err != nil {
			t.Fatalf("Authorize: %v", err)
		}
		return d, reason
	}

	if d, _ := ask("web"); d != authorizer.DecisionAllow {
		t.Fatalf("decision %v for web, want allow", d)
	}
	wantSpec := authorizationv1.SubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "default", Verb: "create", Version: "v1", Resource: "pods", Subresource: "portforward", Name: "web"},
		User:               "alice", UID: "u-1", Groups: []string{"devs", "system:authenticated"},
	}
	if got := last.Load().Spec; !reflect.DeepEqual(got, wantSpec) {
		t.Errorf("review spec\n got %+v\nwant %+v", got, wantSpec)
	}
	if d, _ := ask("web"); d != authorizer.DecisionAllow || reviews.Load() != 1 {
		t.Errorf("second ask: decision %v after %d reviews, want allow from the cache after 1", d, reviews.Load())
	}
	if d, reason := ask("db"); d != authorizer.DecisionNoOpinion || reason != "not web" {
		t.Errorf("db: decision %v reason %q, want no opinion and %q", d, reason, "not web")
	}
	ask("db")
	if n := reviews.Load(); n != 2 {
		t.Errorf("%d reviews after a repeated denial within its TTL, want 2", n)
	}
	time.Sleep(100 * time.Millisecond) // past the 50ms unauthorized TTL
	ask("db")
	if n := reviews.Load(); n != 3 {
		t.Errorf("%d reviews after the denial's TTL, want 3", n)
	}
}
