package apiserver

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestTokenReview(t *testing.T) {
	srv, err := Start(Options{Tokens: map[string]TokenUser{
		"bob":    {Username: "bob", UID: "7", Groups: []string{"ops"}, Extra: map[string]authenticationv1.ExtraValue{"team": {"sre"}}},
		"scoped": {Username: "carol", Audiences: []string{"pfgateway", "vault"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	bob := authenticationv1.UserInfo{Username: "bob", UID: "7", Groups: []string{"ops"}, Extra: map[string]authenticationv1.ExtraValue{"team": {"sre"}}}
	tests := []struct {
		name      string
		spec      authenticationv1.TokenReviewSpec
		want      authenticationv1.TokenReviewStatus
		wantError string // an API error instead of a status
	}{
		{name: "known token, no audience asked", spec: authenticationv1.TokenReviewSpec{Token: "bob"},
			want: authenticationv1.TokenReviewStatus{Authenticated: true, User: bob, Audiences: []string{DefaultAudience}}},
		{name: "unknown token", spec: authenticationv1.TokenReviewSpec{Token: "nobody"}},
		{name: "token bound to the asked audience", spec: authenticationv1.TokenReviewSpec{Token: "scoped", Audiences: []string{"other", "vault"}},
			want: authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "carol"}, Audiences: []string{"vault"}}},
		{name: "token bound to other audiences", spec: authenticationv1.TokenReviewSpec{Token: "scoped"},
			want: authenticationv1.TokenReviewStatus{Error: `token audiences ["pfgateway" "vault"] is invalid for the target audiences ["` + DefaultAudience + `"]`}},
		{name: "empty token", spec: authenticationv1.TokenReviewSpec{}, wantError: "token is required for TokenReview in authentication"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cs.AuthenticationV1().TokenReviews().Create(context.Background(), &authenticationv1.TokenReview{Spec: tt.spec}, metav1.CreateOptions{})
			if tt.wantError != "" {
				if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("Create = %v, want a BadRequest %q", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Status, tt.want) {
				t.Fatalf("status\n %+v\nwant %+v", got.Status, tt.want)
			}
			if got.Spec.Token != "" {
				t.Errorf("the token was echoed back")
			}
		})
	}

	// The table can change at runtime.
	srv.SetTokens(map[string]TokenUser{"dave": {Username: "dave"}})
	for token, want := range map[string]bool{"dave": true, "bob": false} {
		got, err := cs.AuthenticationV1().TokenReviews().Create(context.Background(), &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
		if err != nil || got.Status.Authenticated != want {
			t.Errorf("after SetTokens, %s: %+v %v, want authenticated=%v", token, got, err, want)
		}
	}

	// Reviews are recorded like every other request, and only POST is served.
	resp, err := http.Get(srv.URL() + TokenReviewPath)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
		t.Errorf("GET tokenreviews: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	var posts int
	for _, r := range srv.Requests() {
		if r.Method == http.MethodPost && r.Path == TokenReviewPath {
			posts++
		}
	}
	if posts != len(tests)+2 {
		t.Errorf("%d TokenReview POSTs recorded, want %d", posts, len(tests)+2)
	}
}
