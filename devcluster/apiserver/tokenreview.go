package apiserver

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes/scheme"
)

// TokenReviewPath is where TokenReviews are created.
const TokenReviewPath = "/apis/authentication.k8s.io/v1/tokenreviews"

// DefaultAudience is the audience of tokens that name none, as the API
// server's own audience (its service account issuer) by default.
const DefaultAudience = "https://kubernetes.default.svc.cluster.local"

// TokenUser is who a bearer token authenticates as.
type TokenUser struct {
	Username string
	UID      string
	Groups   []string
	Extra    map[string]authenticationv1.ExtraValue
	// Audiences the token is valid for; empty means DefaultAudience.
	Audiences []string
}

// tokenTable answers TokenReviews; its zero value knows no token.
type tokenTable struct {
	mu     sync.Mutex
	tokens map[string]TokenUser
}

func (t *tokenTable) set(tokens map[string]TokenUser) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tokens = make(map[string]TokenUser, len(tokens))
	for k, v := range tokens {
		t.tokens[k] = v
	}
}

func (t *tokenTable) get(token string) (TokenUser, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u, ok := t.tokens[token]
	return u, ok
}

// SetTokens replaces the table TokenReviews are answered from.
func (s *Server) SetTokens(tokens map[string]TokenUser) { s.tokens.set(tokens) }

// serveTokenReview answers POST TokenReviewPath and reports whether the
// request was one. Like the real registry (pkg/registry/authentication/
// tokenreview): the audiences are spec.audiences or the server's own, a
// token is authenticated only for audiences it shares with them, and those
// shared audiences are returned in status.audiences.
func (s *Server) serveTokenReview(w http.ResponseWriter, r *http.Request) bool {
	if strings.TrimSuffix(r.URL.Path, "/") != TokenReviewPath {
		return false
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, r, methodNotAllowed())
		return true
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err != nil || len(body) > maxReviewBytes {
		writeError(w, r, apierrors.NewRequestEntityTooLargeError("limit is 1048576 bytes"))
		return true
	}
	review := &authenticationv1.TokenReview{}
	if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, review); err != nil {
		writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("decoding TokenReview: %v", err)))
		return true
	}
	if review.Spec.Token == "" {
		writeError(w, r, apierrors.NewBadRequest("token is required for TokenReview in authentication"))
		return true
	}
	review.Status = s.review(review.Spec)
	review.Spec.Token = "" // the real server does not echo the token either
	writeObject(w, r, http.StatusCreated, review)
	return true
}

func (s *Server) review(spec authenticationv1.TokenReviewSpec) authenticationv1.TokenReviewStatus {
	u, ok := s.tokens.get(spec.Token)
	if !ok {
		return authenticationv1.TokenReviewStatus{}
	}
	want := spec.Audiences
	if len(want) == 0 {
		want = []string{DefaultAudience}
	}
	has := u.Audiences
	if len(has) == 0 {
		has = []string{DefaultAudience}
	}
	var auds []string
	for _, a := range want {
		if slices.Contains(has, a) {
			auds = append(auds, a)
		}
	}
	if len(auds) == 0 {
		return authenticationv1.TokenReviewStatus{Error: fmt.Sprintf("token audiences %q is invalid for the target audiences %q", has, want)}
	}
	return authenticationv1.TokenReviewStatus{
		Authenticated: true,
		User:          authenticationv1.UserInfo{Username: u.Username, UID: u.UID, Groups: u.Groups, Extra: u.Extra},
		Audiences:     auds,
	}
}
