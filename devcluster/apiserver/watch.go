package apiserver

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"
	"k8s.io/client-go/kubernetes/scheme"
)

// defaultWatchTimeout stands in for kube-apiserver's randomised 30-60
// minute limit on watches that set no timeoutSeconds.
const defaultWatchTimeout = 30 * time.Minute

// serveWatch streams changes as metav1.WatchEvent frames, flushing each,
// until the client leaves, timeoutSeconds passes, the server closes or the
// watcher falls too far behind.
//
// The start follows kube-apiserver: with sendInitialEvents=true (client-go's
// reflector asks for it since the WatchListClient feature went on by
// default) ADDED events for every current object are followed by a BOOKMARK
// annotated k8s.io/initial-events-end; with resourceVersion "" or "0" the
// current objects come as ADDED events; with a resourceVersion the changes
// after it are replayed, or 410 Gone if they are no longer kept.
func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request, req request, opts metav1.ListOptions, f *filter) {
	info, err := negotiation.NegotiateOutputMediaTypeStream(r, scheme.Codecs, negotiation.DefaultEndpointRestrictions)
	if err != nil {
		writeError(w, r, err)
		return
	}
	snapshot, after, err := startOf(opts)
	if err != nil {
		writeError(w, r, err)
		return
	}
	gvr, gvk := req.gv.gvr(req.res), req.gv.gvk(req.res)
	sub, initial, rv, err := s.store.subscribe(gvr, gvk, req.namespace, snapshot, after)
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer s.store.unsubscribe(sub)

	timeout := defaultWatchTimeout
	if opts.TimeoutSeconds != nil && *opts.TimeoutSeconds > 0 {
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()

	mediaType := info.MediaType
	if mediaType != runtime.ContentTypeJSON {
		mediaType += ";stream=watch" // as kube-apiserver labels non-JSON streams
	}
	w.Header().Set("Content-Type", mediaType)
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	flush()

	frames := streaming.NewEncoder(info.StreamSerializer.Framer.NewFrameWriter(w), info.StreamSerializer.Serializer)
	embedded := scheme.Codecs.EncoderForVersion(info.Serializer, req.gv.gv)
	send := func(typ watch.EventType, obj runtime.Object) bool {
		var buf bytes.Buffer
		if err := embedded.Encode(obj, &buf); err != nil {
			return false
		}
		if err := frames.Encode(&metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: buf.Bytes()}}); err != nil {
			return false
		}
		flush()
		return true
	}
	deliver := func(e event) bool {
		typ, obj, ok := f.translate(e)
		return !ok || send(typ, obj)
	}

	for _, e := range initial {
		if !deliver(e) {
			return
		}
	}
	if opts.SendInitialEvents != nil && *opts.SendInitialEvents && opts.AllowWatchBookmarks {
		if !send(watch.Bookmark, initialEventsEnd(gvk, rv)) {
			return
		}
	}
	for {
		select {
		case e, ok := <-sub.ch:
			if !ok || !deliver(e) {
				return
			}
		case <-timer.C:
			return
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}

// startOf reads where a watch starts: with a snapshot of current objects
// (resourceVersion "" or "0", or sendInitialEvents), or after a given
// resourceVersion.
func startOf(o metav1.ListOptions) (snapshot bool, after *uint64, err error) {
	if o.SendInitialEvents != nil && *o.SendInitialEvents {
		return true, nil, nil
	}
	if o.ResourceVersion == "" || o.ResourceVersion == "0" {
		return o.SendInitialEvents == nil, nil, nil
	}
	rv, err := strconv.ParseUint(o.ResourceVersion, 10, 64)
	if err != nil {
		return false, nil, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version: %q", o.ResourceVersion))
	}
	return false, &rv, nil
}

// translate turns a stored change into what a watcher with these selectors
// sees, as the watch cache does: an object that starts matching is ADDED,
// one that stops matching is DELETED. The object returned is a copy the
// encoder may touch.
func (f *filter) translate(e event) (watch.EventType, runtime.Object, bool) {
	cur := f.matches(e.obj)
	switch e.typ {
	case watch.Modified:
		was := e.prev != nil && f.matches(e.prev)
		switch {
		case cur && was:
			return watch.Modified, e.obj.DeepCopyObject(), true
		case cur:
			return watch.Added, e.obj.DeepCopyObject(), true
		case was:
			old := e.prev.DeepCopyObject()
			if m, err := meta.Accessor(old); err == nil {
				m.SetResourceVersion(strconv.FormatUint(e.rv, 10))
			}
			return watch.Deleted, old, true
		}
		return "", nil, false
	default:
		return e.typ, e.obj.DeepCopyObject(), cur
	}
}

// initialEventsEnd is the bookmark that tells client-go's reflector the
// initial ADDED events are complete.
func initialEventsEnd(gvk schema.GroupVersionKind, rv uint64) runtime.Object {
	obj, err := scheme.Scheme.New(gvk)
	if err != nil {
		obj = &metav1.PartialObjectMetadata{}
	}
	if m, err := meta.Accessor(obj); err == nil {
		m.SetResourceVersion(strconv.FormatUint(rv, 10))
		m.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	return obj
}
