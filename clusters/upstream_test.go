package clusters

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/rest"
)

func TestUpstreamHeaders(t *testing.T) {
	wrap, err := upstreamHeaders(&rest.Config{Host: "https://up.example:6443", BearerToken: "gateway-token"})
	if err != nil {
		t.Fatal(err)
	}
	alice := &user.DefaultInfo{Name: "alice", UID: "u-1", Groups: []string{"devs", "system:authenticated"},
		Extra: map[string][]string{"authentication.kubernetes.io/credential-id": {"X509SHA256=ab"}}}
	newReq := func(query string, u user.Info) *http.Request {
		ctx := t.Context()
		if u != nil {
			ctx = request.WithUser(ctx, u)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://up.example:6443/api/v1/namespaces/ns/pods/p/portforward"+query, nil)
		// What backendRequest could let through must not survive: it
		// never copies these, and the wrapper replaces them anyway.
		req.Header.Set("Impersonate-User", "mallory")
		req.Header.Set("User-Agent", "kubectl/v1.33")
		return req
	}

	t.Run("should send the gateway's token and impersonate the caller", func(t *testing.T) {
		out, err := wrap(newReq("", alice))
		if err != nil {
			t.Fatal(err)
		}
		want := http.Header{
			"Authorization":    {"Bearer gateway-token"},
			"Impersonate-User": {"alice"}, "Impersonate-Uid": {"u-1"},
			"Impersonate-Group": {"devs", "system:authenticated"},
			"Impersonate-Extra-Authentication.kubernetes.io%2fcredential-Id": {"X509SHA256=ab"},
			"User-Agent": {"kubectl/v1.33"},
		}
		if !reflect.DeepEqual(out.Header, want) {
			t.Errorf("headers\n got %v\nwant %v", out.Header, want)
		}
		if out.URL.RawQuery != "" {
			t.Errorf("query %q", out.URL.RawQuery)
		}
	})
	t.Run("should name legacy ports as the API server reads them", func(t *testing.T) {
		out, err := wrap(newReq("?port=80&port=443", alice))
		if err != nil {
			t.Fatal(err)
		}
		if q, _ := url.ParseQuery(out.URL.RawQuery); !reflect.DeepEqual(q, url.Values{"ports": {"80", "443"}}) {
			t.Errorf("query %q", out.URL.RawQuery)
		}
	})
	t.Run("should fail without a caller rather than go as the gateway", func(t *testing.T) {
		if out, err := wrap(newReq("", nil)); err == nil {
			t.Fatalf("sent %v", out.Header)
		}
	})
}
