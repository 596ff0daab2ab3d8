package apiserver

import (
	"io"
	"net/http"
	"sync"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/scheme"
)

// subjectAccessReviewPath is where clients create SubjectAccessReviews.
const subjectAccessReviewPath = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

// maxReviewBytes bounds a review's body (SubjectAccessReview and
// TokenReview); real ones are a few hundred bytes.
const maxReviewBytes = 1 << 20

// SubjectAccessReviewFunc decides a SubjectAccessReview in place of RBAC.
// An error is answered as its Status (an apierrors error) or as a 500.
type SubjectAccessReviewFunc func(authorizationv1.SubjectAccessReviewSpec) (authorizationv1.SubjectAccessReviewStatus, error)

// AllowAll is the default decision: everything is allowed, so the demo and
// tests that do not care about authorization work unchanged.
func AllowAll(authorizationv1.SubjectAccessReviewSpec) (authorizationv1.SubjectAccessReviewStatus, error) {
	return authorizationv1.SubjectAccessReviewStatus{Allowed: true}, nil
}

// sarState is the SubjectAccessReview endpoint's decision and record.
type sarState struct {
	mu      sync.Mutex // protects the fields below
	decide  SubjectAccessReviewFunc
	reviews []authorizationv1.SubjectAccessReview
}

// SetSubjectAccessReviewer replaces the decision for reviews from now on;
// nil is AllowAll.
func (s *Server) SetSubjectAccessReviewer(f SubjectAccessReviewFunc) {
	s.sar.mu.Lock()
	defer s.sar.mu.Unlock()
	s.sar.decide = f
}

// SubjectAccessReviews returns the reviews answered so far with the
// answers given, oldest first (at most the last 10000).
func (s *Server) SubjectAccessReviews() []authorizationv1.SubjectAccessReview {
	s.sar.mu.Lock()
	defer s.sar.mu.Unlock()
	out := make([]authorizationv1.SubjectAccessReview, len(s.sar.reviews))
	for i := range s.sar.reviews {
		s.sar.reviews[i].DeepCopyInto(&out[i])
	}
	return out
}

// serveSubjectAccessReview answers POST subjectaccessreviews like the API
// server: the review back with its status, 201 Created. Reviews the real
// server would reject as invalid are rejected the same way (422).
func (s *Server) serveSubjectAccessReview(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, r, methodNotAllowed())
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err != nil || len(body) > maxReviewBytes {
		writeError(w, r, apierrors.NewRequestEntityTooLargeError("limit is 1 MiB"))
		return
	}
	sar := &authorizationv1.SubjectAccessReview{}
	if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, sar); err != nil {
		writeError(w, r, apierrors.NewBadRequest(err.Error()))
		return
	}
	if errs := validateSubjectAccessReview(&sar.Spec); len(errs) > 0 {
		writeError(w, r, apierrors.NewInvalid(schema.GroupKind{Group: "authorization.k8s.io", Kind: "SubjectAccessReview"}, "", errs))
		return
	}
	s.sar.mu.Lock()
	decide := s.sar.decide
	s.sar.mu.Unlock()
	if decide == nil {
		decide = AllowAll
	}
	st, err := decide(sar.Spec)
	if err != nil {
		writeError(w, r, err)
		return
	}
	sar.Status = st
	s.sar.mu.Lock()
	if len(s.sar.reviews) >= maxRecorded {
		s.sar.reviews = append(s.sar.reviews[:0:0], s.sar.reviews[len(s.sar.reviews)-maxRecorded/2:]...)
	}
	s.sar.reviews = append(s.sar.reviews, *sar.DeepCopy())
	s.sar.mu.Unlock()
	writeObject(w, r, http.StatusCreated, sar)
}

// validateSubjectAccessReview is the real server's check, in short.
func validateSubjectAccessReview(spec *authorizationv1.SubjectAccessReviewSpec) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec")
	if (spec.ResourceAttributes == nil) == (spec.NonResourceAttributes == nil) {
		errs = append(errs, field.Invalid(p.Child("resourceAttributes"), spec.ResourceAttributes, "exactly one of nonResourceAttributes or resourceAttributes must be specified"))
	}
	if spec.User == "" && len(spec.Groups) == 0 {
		errs = append(errs, field.Invalid(p.Child("user"), spec.User, "at least one of user or group must be specified"))
	}
	return errs
}
