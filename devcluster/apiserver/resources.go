package apiserver

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
)

// request is a parsed resource path: a collection (name empty) or one
// object, in a namespace or across all of them.
type request struct {
	gv        *groupVersion
	res       resource
	namespace string
	name      string
}

// serveGroupVersion answers under /api/v1 or /apis/apps/v1; rest is the
// path after the group version prefix.
func (s *Server) serveGroupVersion(w http.ResponseWriter, r *http.Request, gv *groupVersion, rest string) {
	if rest == "" {
		writeObject(w, r, http.StatusOK, gv.resourceList())
		return
	}
	if !strings.HasPrefix(rest, "/") {
		writeError(w, r, notFound())
		return
	}
	req, ok := parsePath(gv, strings.Split(rest[1:], "/"))
	if !ok {
		writeError(w, r, notFound())
		return
	}
	var opts metav1.ListOptions
	if err := scheme.ParameterCodec.DecodeParameters(r.URL.Query(), metav1.Unversioned, &opts); err != nil {
		writeError(w, r, apierrors.NewBadRequest(err.Error()))
		return
	}
	f, err := newFilter(req, opts)
	if err != nil {
		writeError(w, r, err)
		return
	}
	switch {
	case opts.Watch:
		s.serveWatch(w, r, req, opts, f)
	case req.name != "":
		s.serveGet(w, r, req)
	default:
		s.serveList(w, r, req, f)
	}
}

// parsePath splits the forms kube-apiserver serves for reads:
// {res}, {res}/{name} (cluster-scoped), namespaces/{ns}/{res} and
// namespaces/{ns}/{res}/{name}. Subresources are not served.
func parsePath(gv *groupVersion, parts []string) (request, bool) {
	for _, p := range parts {
		if p == "" {
			return request{}, false
		}
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		res, ok := gv.lookup(parts[2])
		if !ok || !res.namespaced || len(parts) > 4 {
			return request{}, false
		}
		req := request{gv: gv, res: res, namespace: parts[1]}
		if len(parts) == 4 {
			req.name = parts[3]
		}
		return req, true
	}
	res, ok := gv.lookup(parts[0])
	if !ok || len(parts) > 2 || (len(parts) == 2 && res.namespaced) {
		return request{}, false
	}
	req := request{gv: gv, res: res}
	if len(parts) == 2 {
		req.name = parts[1]
	}
	return req, true
}

func (s *Server) serveGet(w http.ResponseWriter, r *http.Request, req request) {
	obj, err := s.store.Get(req.gv.gvr(req.res), req.namespace, req.name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeObject(w, r, http.StatusOK, obj)
}

// serveList answers a list in one go: limit is ignored and no continue
// token is set, which the API allows and clients handle.
func (s *Server) serveList(w http.ResponseWriter, r *http.Request, req request, f *filter) {
	list, err := s.store.List(req.gv.gvr(req.res), req.gv.gvk(req.res), req.namespace)
	if err != nil {
		writeError(w, r, err)
		return
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	kept := items[:0]
	for _, item := range items {
		if f.matches(item) {
			kept = append(kept, item)
		}
	}
	if err := meta.SetList(list, kept); err != nil {
		writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	writeObject(w, r, http.StatusOK, list)
}

// filter applies a request's label and field selectors.
type filter struct {
	labels labels.Selector
	fields fields.Selector
}

// newFilter parses the selectors, rejecting field labels the API server
// would reject for the resource. A request for one object by path becomes
// a metadata.name selector, as in kube-apiserver.
func newFilter(req request, opts metav1.ListOptions) (*filter, error) {
	f := &filter{labels: labels.Everything(), fields: fields.Everything()}
	var err error
	if opts.LabelSelector != "" {
		if f.labels, err = labels.Parse(opts.LabelSelector); err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
	}
	if opts.FieldSelector != "" {
		if f.fields, err = fields.ParseSelector(opts.FieldSelector); err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
	}
	supported := fieldSet(req.res.kind, nil)
	for _, rq := range f.fields.Requirements() {
		if _, ok := supported[rq.Field]; !ok {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", rq.Field))
		}
	}
	if req.name != "" {
		f.fields = fields.AndSelectors(f.fields, fields.OneTermEqualSelector("metadata.name", req.name))
	}
	return f, nil
}

func (f *filter) matches(obj runtime.Object) bool {
	m, err := meta.Accessor(obj)
	if err != nil {
		return false
	}
	if !f.labels.Matches(labels.Set(m.GetLabels())) {
		return false
	}
	if f.fields.Empty() {
		return true
	}
	kinds, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil {
		return false
	}
	return f.fields.Matches(fieldSet(kinds[0].Kind, obj))
}

// fieldSet gives the field labels the API server supports for a kind and,
// when obj is set, their values. The keys alone say what may be selected.
func fieldSet(kind string, obj runtime.Object) fields.Set {
	set := fields.Set{"metadata.name": "", "metadata.namespace": ""}
	if m, err := meta.Accessor(obj); obj != nil && err == nil {
		set["metadata.name"], set["metadata.namespace"] = m.GetName(), m.GetNamespace()
	}
	switch kind {
	case "Pod":
		p, _ := obj.(*corev1.Pod)
		if p == nil {
			p = &corev1.Pod{}
		}
		set["spec.nodeName"] = p.Spec.NodeName
		set["spec.restartPolicy"] = string(p.Spec.RestartPolicy)
		set["spec.schedulerName"] = p.Spec.SchedulerName
		set["spec.serviceAccountName"] = p.Spec.ServiceAccountName
		set["spec.hostNetwork"] = strconv.FormatBool(p.Spec.HostNetwork)
		set["status.phase"] = string(p.Status.Phase)
		set["status.podIP"] = p.Status.PodIP
		set["status.nominatedNodeName"] = p.Status.NominatedNodeName
	case "Node":
		n, _ := obj.(*corev1.Node)
		if n == nil {
			n = &corev1.Node{}
		}
		set["spec.unschedulable"] = strconv.FormatBool(n.Spec.Unschedulable)
	case "Namespace":
		n, _ := obj.(*corev1.Namespace)
		if n == nil {
			n = &corev1.Namespace{}
		}
		set["status.phase"] = string(n.Status.Phase)
	}
	return set
}
