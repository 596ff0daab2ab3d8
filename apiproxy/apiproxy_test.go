package apiproxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/router"
)

func TestRelay(t *testing.T) {
	var got *http.Request
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"Pod"}`))
	}))
	defer api.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	p, err := New(map[string]*rest.Config{
		"a":    {Host: api.URL + "/prefix", BearerToken: "gateway-token"},
		"down": {Host: down.URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/api/v1/namespaces/ns/pods/p?pretty=1", nil)
	req.RemoteAddr = "192.0.2.1:1234"
	for k, v := range map[string]string{
		"Authorization": "Bearer caller", "Impersonate-User": "admin", "Impersonate-Group": "system:masters",
		"X-Remote-User": "admin", "Cookie": "c=1", "Accept": "application/vnd.kubernetes.protobuf", "Kubectl-Command": "kubectl port-forward",
	} {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	alice := &user.DefaultInfo{Name: "alice", Groups: []string{"devs", "system:authenticated"}}
	p.ServeHTTP(w, req.WithContext(request.WithUser(router.WithCluster(req.Context(), "a"), alice)))
	if w.Code != 200 || w.Body.String() != `{"kind":"Pod"}` {
		t.Fatalf("relay answered %d %s", w.Code, w.Body)
	}
	if got.URL.Path != "/prefix/api/v1/namespaces/ns/pods/p" || got.URL.RawQuery != "pretty=1" {
		t.Fatalf("relayed to %s", got.URL)
	}
	if a := got.Header.Get("Authorization"); a != "Bearer gateway-token" {
		t.Fatalf("Authorization at the API server = %q, want the gateway's own", a)
	}
	for _, h := range []string{"X-Remote-User", "Cookie"} {
		if got.Header.Get(h) != "" {
			t.Errorf("%s relayed", h)
		}
	}
	// The caller's own Impersonate-* never; the gateway's, naming the caller.
	if u, g := got.Header.Get("Impersonate-User"), got.Header.Values("Impersonate-Group"); u != "alice" || strings.Join(g, ",") != "devs,system:authenticated" {
		t.Errorf("impersonation at the API server: user %q groups %q, want alice and devs,system:authenticated", u, g)
	}
	if got.Header.Get("Accept") != "application/vnd.kubernetes.protobuf" || got.Header.Get("Kubectl-Command") == "" || !strings.HasPrefix(got.Header.Get("X-Forwarded-For"), "192.0.2.1") {
		t.Errorf("negotiation or audit headers lost: %v", got.Header)
	}

	t.Run("should answer 503 Status when the API server is down", func(t *testing.T) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/version", nil)
		p.ServeHTTP(w, r.WithContext(request.WithUser(router.WithCluster(r.Context(), "down"), alice)))
		var st metav1.Status
		if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || w.Code != 503 || !strings.Contains(st.Message, `cluster "down"`) {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	})
	t.Run("should answer 500 Status and relay nothing without a user", func(t *testing.T) {
		got = nil
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/version", nil)
		p.ServeHTTP(w, r.WithContext(router.WithCluster(r.Context(), "a")))
		var st metav1.Status
		if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || w.Code != 500 || st.Message != "Internal error occurred: no authenticated user to impersonate" {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		if got != nil {
			t.Errorf("relayed %s without a user", got.URL)
		}
	})
}
