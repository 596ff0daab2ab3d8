package apiserver

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestSubjectAccessReview(t *testing.T) {
	srv, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	pf := authorizationv1.SubjectAccessReviewSpec{
		User: "alice", Groups: []string{"devs"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "default", Verb: "create", Version: "v1", Resource: "pods", Subresource: "portforward", Name: "web"},
	}
	denyDB := func(spec authorizationv1.SubjectAccessReviewSpec) (authorizationv1.SubjectAccessReviewStatus, error) {
		if spec.ResourceAttributes.Name == "db" {
			return authorizationv1.SubjectAccessReviewStatus{Reason: "no RBAC for db"}, nil
		}
		return authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: "RBAC: allowed"}, nil
	}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "authorization.k8s.io", Resource: "subjectaccessreviews"}, "",
		errors.New("User \"pfgateway\" cannot create resource"))
	failing := func(authorizationv1.SubjectAccessReviewSpec) (authorizationv1.SubjectAccessReviewStatus, error) {
		return authorizationv1.SubjectAccessReviewStatus{}, forbidden
	}
	db := *pf.DeepCopy()
	db.ResourceAttributes.Name = "db"
	tests := []struct {
		name     string
		decide   SubjectAccessReviewFunc
		spec     authorizationv1.SubjectAccessReviewSpec
		want     authorizationv1.SubjectAccessReviewStatus
		wantCode int32 // of the error; 0 for none
		recorded bool
	}{
		{name: "should allow everything by default", spec: pf, want: authorizationv1.SubjectAccessReviewStatus{Allowed: true}, recorded: true},
		{name: "should answer what the decision says (allow)", decide: denyDB, spec: pf, want: authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: "RBAC: allowed"}, recorded: true},
		{name: "should answer what the decision says (deny)", decide: denyDB, spec: db, want: authorizationv1.SubjectAccessReviewStatus{Reason: "no RBAC for db"}, recorded: true},
		{name: "should answer the decision's error as its Status", decide: failing, spec: pf, wantCode: http.StatusForbidden},
		{name: "should refuse a review without user or group", spec: authorizationv1.SubjectAccessReviewSpec{ResourceAttributes: pf.ResourceAttributes}, wantCode: http.StatusUnprocessableEntity},
		{name: "should refuse a review without attributes", spec: authorizationv1.SubjectAccessReviewSpec{User: "alice"}, wantCode: http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.SetSubjectAccessReviewer(tt.decide)
			before := len(srv.SubjectAccessReviews())
			got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{Spec: tt.spec}, metav1.CreateOptions{})
			if tt.wantCode != 0 {
				var st apierrors.APIStatus
				if !errors.As(err, &st) || st.Status().Code != tt.wantCode {
					t.Fatalf("err %v, want a Status with code %d", err, tt.wantCode)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if got.Status != tt.want || !reflect.DeepEqual(got.Spec, tt.spec) {
				t.Errorf("answer spec %+v status %+v, want the spec back and %+v", got.Spec, got.Status, tt.want)
			}
			reviews := srv.SubjectAccessReviews()
			if n := len(reviews) - before; n != map[bool]int{true: 1, false: 0}[tt.recorded] {
				t.Fatalf("%d reviews recorded, want recorded=%v", n, tt.recorded)
			}
			if tt.recorded {
				if last := reviews[len(reviews)-1]; !reflect.DeepEqual(last.Spec, tt.spec) || last.Status != tt.want {
					t.Errorf("recorded %+v", last)
				}
			}
		})
	}
}
