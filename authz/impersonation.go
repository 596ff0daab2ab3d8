package authz

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/transport"

	"github.com/pfgateway/pfgateway/status"
)

// impersonatePrefix starts every impersonation header: Impersonate-User,
// -Group, -Uid and -Extra-<key> (k8s.io/client-go/transport's constants).
const impersonatePrefix = "Impersonate-"

// WithImpersonationRefused answers 403 to any request carrying an
// Impersonate-* header. The gateway acts as its callers toward the API
// server and so holds the impersonate permission; letting a caller choose
// whom to impersonate would lend them that permission, and the kubelet
// path has no impersonation at all. It runs before authorization.
func WithImpersonationRefused(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if names := impersonationHeaders(req.Header); len(names) > 0 {
			status.Write(w, req, apierrors.NewForbidden(schema.GroupResource{}, "",
				fmt.Errorf("impersonation through pfgateway is not allowed (the request carries %s); authenticate as the user instead", strings.Join(names, ", "))))
			return
		}
		next.ServeHTTP(w, req)
	})
}

// impersonationHeaders names the Impersonate-* keys of h, sorted, as they
// are in h. The check is on the canonical form, so keys set in the map by
// hand, not canonicalised, are found too.
func impersonationHeaders(h http.Header) []string {
	var names []string
	for k := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), impersonatePrefix) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return names
}

// errNoUser fails a relayed request whose context has no authenticated
// user: without one it would go out with the gateway's own identity.
var errNoUser = errors.New("pfgateway: no authenticated user in the request context to impersonate")

// ImpersonatingTransport returns base wrapped so that every request goes
// out as the user in its context (request.UserFrom): Impersonate-User,
// Impersonate-Uid, one Impersonate-Group per group and
// Impersonate-Extra-<key> per extra value, written by client-go's own
// impersonating round tripper so keys are escaped exactly as kubectl --as
// does. Any Impersonate-* header already on the request is dropped first:
// only the gateway chooses whom it impersonates. A request without a user
// fails rather than go out as the gateway.
func ImpersonatingTransport(base http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		u, ok := request.UserFrom(req.Context())
		if !ok || u.GetName() == "" {
			return nil, errNoUser
		}
		if len(impersonationHeaders(req.Header)) > 0 {
			req = req.Clone(req.Context())
			for _, k := range impersonationHeaders(req.Header) {
				delete(req.Header, k)
			}
		}
		return transport.NewImpersonatingRoundTripper(ImpersonationConfig(u), base).RoundTrip(req)
	})
}

// ImpersonationConfig is u as client-go's impersonation settings.
func ImpersonationConfig(u user.Info) transport.ImpersonationConfig {
	return transport.ImpersonationConfig{UserName: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups(), Extra: u.GetExtra()}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
