package router

import (
	"context"
	"net/http"
	"path"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/pfgateway/pfgateway/status"
)

type clusterKey struct{}

// ClusterFrom returns the cluster a request is for.
func ClusterFrom(ctx context.Context) string {
	s, _ := ctx.Value(clusterKey{}).(string)
	return s
}

// WithCluster returns ctx carrying cluster; for tests and handlers mounted
// without the router.
func WithCluster(ctx context.Context, cluster string) context.Context {
	return context.WithValue(ctx, clusterKey{}, cluster)
}

// SplitClusterPath splits /clusters/{name}/rest into name and /rest. ok is
// false when p has no cluster prefix. A malformed prefix returns an error.
func SplitClusterPath(p string) (name, rest string, ok bool, err error) {
	const prefix = "/clusters/"
	if !strings.HasPrefix(p, prefix) {
		return "", p, false, nil
	}
	name, rest, found := strings.Cut(p[len(prefix):], "/")
	if !found || rest == "" {
		return "", "", true, apierrors.NewNotFound(schema.GroupResource{Resource: "clusters"}, name)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", "", true, apierrors.NewBadRequest("invalid cluster name in path: " + strings.Join(errs, "; "))
	}
	return name, "/" + rest, true, nil
}

// withClusterPrefix strips /clusters/{name} so the rest of the chain (request
// info, routes) sees the path the API server would, and records the cluster.
// Paths that are not clean are refused here rather than redirected.
func withClusterPrefix(next http.Handler, defaultCluster string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p := req.URL.Path
		if p == "" || p[0] != '/' || (path.Clean(p) != p && path.Clean(p)+"/" != p) {
			status.NotFound(w, req)
			return
		}
		name, rest, ok, err := SplitClusterPath(p)
		if err != nil {
			status.Write(w, req, err)
			return
		}
		if !ok {
			name = defaultCluster
		} else {
			req = req.Clone(req.Context())
			req.URL.Path, req.URL.RawPath = rest, ""
		}
		next.ServeHTTP(w, req.WithContext(WithCluster(req.Context(), name)))
	})
}

// known is c.Known, or membership in c.Clusters.
func (c Config) known() func(string) bool {
	if c.Known != nil {
		return c.Known
	}
	return func(name string) bool { return slices.Contains(c.Clusters, name) }
}

// withKnownCluster answers 404 for clusters the gateway does not serve. It
// runs after authentication, so unauthenticated callers learn nothing about
// which clusters exist.
func withKnownCluster(next http.Handler, known func(string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if c := ClusterFrom(req.Context()); !known(c) {
			status.Write(w, req, apierrors.NewNotFound(schema.GroupResource{Resource: "clusters"}, c))
			return
		}
		next.ServeHTTP(w, req)
	})
}
