package apiserver

import (
	"net/http"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// resource is one served resource or subresource, described as discovery
// describes it. Verbs are the real server's, so that clients which look at
// them (kubectl api-resources, RESTMapper users) see the usual cluster;
// only get, list and watch are actually served.
type resource struct {
	name       string // plural, or "pods/status" for a subresource
	singular   string
	kind       string
	namespaced bool
	shortNames []string
	categories []string
	verbs      []string
}

// groupVersion is one served API group version and its resources.
type groupVersion struct {
	gv        schema.GroupVersion
	resources []resource
}

var (
	allVerbs    = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
	statusVerbs = []string{"get", "patch", "update"}
	all         = []string{"all"}
)

var coreV1 = &groupVersion{gv: corev1.SchemeGroupVersion, resources: []resource{
	{name: "namespaces", singular: "namespace", kind: "Namespace", shortNames: []string{"ns"},
		verbs: []string{"create", "delete", "get", "list", "patch", "update", "watch"}},
	{name: "nodes", singular: "node", kind: "Node", shortNames: []string{"no"}, verbs: allVerbs},
	{name: "nodes/status", kind: "Node", verbs: statusVerbs},
	{name: "pods", singular: "pod", kind: "Pod", namespaced: true, shortNames: []string{"po"}, categories: all, verbs: allVerbs},
	{name: "pods/portforward", kind: "PodPortForwardOptions", namespaced: true, verbs: []string{"create", "get"}},
	{name: "pods/status", kind: "Pod", namespaced: true, verbs: statusVerbs},
	{name: "replicationcontrollers", singular: "replicationcontroller", kind: "ReplicationController", namespaced: true,
		shortNames: []string{"rc"}, categories: all, verbs: allVerbs},
	{name: "services", singular: "service", kind: "Service", namespaced: true, shortNames: []string{"svc"}, categories: all, verbs: allVerbs},
}}

var appsV1 = &groupVersion{gv: appsv1.SchemeGroupVersion, resources: []resource{
	{name: "daemonsets", singular: "daemonset", kind: "DaemonSet", namespaced: true, shortNames: []string{"ds"}, categories: all, verbs: allVerbs},
	{name: "deployments", singular: "deployment", kind: "Deployment", namespaced: true, shortNames: []string{"deploy"}, categories: all, verbs: allVerbs},
	{name: "replicasets", singular: "replicaset", kind: "ReplicaSet", namespaced: true, shortNames: []string{"rs"}, categories: all, verbs: allVerbs},
	{name: "statefulsets", singular: "statefulset", kind: "StatefulSet", namespaced: true, shortNames: []string{"sts"}, categories: all, verbs: allVerbs},
}}

// lookup finds a top-level resource (not a subresource) by plural name.
func (g *groupVersion) lookup(name string) (resource, bool) {
	for _, r := range g.resources {
		if r.name == name && r.singular != "" {
			return r, true
		}
	}
	return resource{}, false
}

func (g *groupVersion) gvr(r resource) schema.GroupVersionResource { return g.gv.WithResource(r.name) }
func (g *groupVersion) gvk(r resource) schema.GroupVersionKind     { return g.gv.WithKind(r.kind) }

// resourceList is the legacy discovery document for the group version.
func (g *groupVersion) resourceList() *metav1.APIResourceList {
	list := &metav1.APIResourceList{GroupVersion: g.gv.String()}
	for _, r := range g.resources {
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name:         r.name,
			SingularName: r.singular,
			Namespaced:   r.namespaced,
			Kind:         r.kind,
			Verbs:        r.verbs,
			ShortNames:   r.shortNames,
			Categories:   r.categories,
		})
	}
	return list
}

// serveDiscovery answers /api, /apis and /apis/apps. Aggregated discovery
// is not offered: clients asking for it accept the legacy documents too
// and then fetch each group version's resource list.
func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request, path string) {
	apps := metav1.APIGroup{
		Name:             appsV1.gv.Group,
		Versions:         []metav1.GroupVersionForDiscovery{{GroupVersion: appsV1.gv.String(), Version: appsV1.gv.Version}},
		PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: appsV1.gv.String(), Version: appsV1.gv.Version},
	}
	switch path {
	case "/api":
		writeObject(w, r, http.StatusOK, &metav1.APIVersions{Versions: []string{coreV1.gv.Version}})
	case "/apis":
		writeObject(w, r, http.StatusOK, &metav1.APIGroupList{Groups: []metav1.APIGroup{apps}})
	case "/apis/apps":
		writeObject(w, r, http.StatusOK, &apps)
	}
}
