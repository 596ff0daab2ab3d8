package authz

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
)

func TestWithImpersonationRefused(t *testing.T) {
	tests := []struct {
		name    string
		header  http.Header
		wantMsg string // "" passes
	}{
		{name: "should pass a request without impersonation", header: http.Header{"Authorization": {"Bearer x"}}},
		{name: "should refuse Impersonate-User", header: http.Header{"Impersonate-User": {"admin"}},
			wantMsg: "forbidden: impersonation through pfgateway is not allowed (the request carries Impersonate-User); authenticate as the user instead"},
		{name: "should refuse a group alone and name every header", header: http.Header{"Impersonate-Group": {"system:masters"}, "Impersonate-Uid": {"1"}},
			wantMsg: "forbidden: impersonation through pfgateway is not allowed (the request carries Impersonate-Group, Impersonate-Uid); authenticate as the user instead"},
		{name: "should refuse an extra", header: http.Header{"Impersonate-Extra-Scopes": {"x"}},
			wantMsg: "forbidden: impersonation through pfgateway is not allowed (the request carries Impersonate-Extra-Scopes); authenticate as the user instead"},
		{name: "should refuse a key not in canonical form", header: http.Header{"impersonate-user": {"admin"}},
			wantMsg: "forbidden: impersonation through pfgateway is not allowed (the request carries impersonate-user); authenticate as the user instead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reached := false
			h := WithImpersonationRefused(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
			req := httptest.NewRequest("GET", "/api/v1/namespaces/default/pods/web", nil)
			req.Header = tt.header
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if tt.wantMsg == "" {
				if !reached || rec.Code != 200 {
					t.Fatalf("refused with %d %s", rec.Code, rec.Body)
				}
				return
			}
			if reached {
				t.Fatal("the request reached the next handler")
			}
			var st metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != 403 {
				t.Fatalf("code %d body %s", rec.Code, rec.Body)
			}
			if st.Code != 403 || st.Reason != metav1.StatusReasonForbidden || st.Message != tt.wantMsg {
				t.Errorf("Status %d %q %q, want 403 Forbidden %q", st.Code, st.Reason, st.Message, tt.wantMsg)
			}
		})
	}
}

func TestImpersonatingTransport(t *testing.T) {
	tests := []struct {
		name    string
		user    user.Info // nil: none in the context
		in      http.Header
		want    http.Header
		wantErr bool
	}{
		{name: "should impersonate user and groups", user: &user.DefaultInfo{Name: "alice", Groups: []string{"devs", "system:authenticated"}},
			in:   http.Header{"Accept": {"application/json"}},
			want: http.Header{"Accept": {"application/json"}, "Impersonate-User": {"alice"}, "Impersonate-Group": {"devs", "system:authenticated"}}},
		{name: "should send the UID and escape extra keys as client-go does",
			user: &user.DefaultInfo{Name: "system:serviceaccount:ns:sa", UID: "u-1",
				Extra: map[string][]string{"authentication.kubernetes.io/pod-name": {"p"}, "scopes": {"a", "b"}}},
			want: http.Header{
				"Impersonate-User": {"system:serviceaccount:ns:sa"}, "Impersonate-Uid": {"u-1"},
				"Impersonate-Extra-Authentication.kubernetes.io%2fpod-Name": {"p"}, "Impersonate-Extra-Scopes": {"a", "b"},
			}},
		{name: "should replace impersonation already on the request", user: &user.DefaultInfo{Name: "alice"},
			in:   http.Header{"Impersonate-User": {"admin"}, "impersonate-group": {"system:masters"}},
			want: http.Header{"Impersonate-User": {"alice"}}},
		{name: "should fail without a user rather than go out as the gateway", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got http.Header
			rt := ImpersonatingTransport(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				got = r.Header
				return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
			}))
			req := httptest.NewRequest("GET", "https://api/api/v1/namespaces/default/pods/web", nil)
			req.Header = tt.in
			if req.Header == nil {
				req.Header = http.Header{}
			}
			if tt.user != nil {
				req = req.WithContext(request.WithUser(req.Context(), tt.user))
			}
			_, err := rt.RoundTrip(req)
			if tt.wantErr {
				if err == nil || got != nil {
					t.Fatalf("err %v, sent %v; want an error and nothing sent", err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("headers\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}
