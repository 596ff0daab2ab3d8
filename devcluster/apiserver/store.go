package apiserver

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	clienttesting "k8s.io/client-go/testing"
)

const (
	// keepEvents is how many recent events stay replayable for watches that
	// resume from a resourceVersion; older ones answer 410 Gone, after which
	// client-go relists, as it does against a compacted real API server.
	keepEvents = 1024
	// subscriberBuffer bounds how far one watcher may lag. A watcher that
	// falls further behind is closed (the client re-watches) instead of
	// blocking writers, as the real watch cache does.
	subscriberBuffer = 256
)

// event is one change to a stored object.
type event struct {
	typ  watch.EventType
	gvr  schema.GroupVersionResource
	ns   string
	rv   uint64
	obj  runtime.Object // resourceVersion set to rv; shared, copy before encoding
	prev runtime.Object // the object a MODIFIED event replaced, else nil
}

// subscriber receives the events of one resource, in one namespace or all.
type subscriber struct {
	gvr schema.GroupVersionResource
	ns  string
	ch  chan event
}

// store is the ObjectTracker handed out by Server.Tracker. It wraps client-go's
// tracker, which keeps the objects but neither stamps resourceVersion on
// them, nor keeps history to resume watches from, nor survives a slow
// watcher (its fake watchers panic once 100 events queue up). Every write
// goes through store, which stamps a cluster-wide counter, records the
// event and fans it out to bounded subscribers.
type store struct {
	inner clienttesting.ObjectTracker

	mu        sync.RWMutex // serialises writes with the counter, log and subscribers
	rv        uint64
	log       []event // recent events, oldest first
	compacted uint64  // events with rv <= compacted have left the log
	subs      map[*subscriber]struct{}
}

var _ clienttesting.ObjectTracker = (*store)(nil)

func newStore() *store {
	return &store{
		inner: clienttesting.NewObjectTracker(scheme.Scheme, scheme.Codecs.UniversalDecoder()),
		subs:  map[*subscriber]struct{}{},
	}
}

// Add stores a new object (or each item of a list) under the resource its
// kind guesses to, as client-go's tracker does.
func (s *store) Add(obj runtime.Object) error {
	if meta.IsListType(obj) {
		items, err := meta.ExtractList(obj)
		if err != nil {
			return err
		}
		if errs := runtime.DecodeList(items, scheme.Codecs.UniversalDecoder()); len(errs) > 0 {
			return errs[0]
		}
		for _, item := range items {
			if err := s.Add(item); err != nil {
				return err
			}
		}
		return nil
	}
	gvks, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil {
		return err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	for _, gvk := range gvks {
		gvr, _ := meta.UnsafeGuessKindToResource(gvk)
		if err := s.Create(gvr, obj, m.GetNamespace()); err != nil {
			return err
		}
	}
	return nil
}

func (s *store) Create(gvr schema.GroupVersionResource, obj runtime.Object, ns string, opts ...metav1.CreateOptions) error {
	return s.put(gvr, obj, ns, false, func(o runtime.Object) error { return s.inner.Create(gvr, o, ns, opts...) })
}

func (s *store) Update(gvr schema.GroupVersionResource, obj runtime.Object, ns string, opts ...metav1.UpdateOptions) error {
	return s.put(gvr, obj, ns, true, func(o runtime.Object) error { return s.inner.Update(gvr, o, ns, opts...) })
}

func (s *store) Patch(gvr schema.GroupVersionResource, obj runtime.Object, ns string, opts ...metav1.PatchOptions) error {
	return s.put(gvr, obj, ns, true, func(o runtime.Object) error { return s.inner.Patch(gvr, o, ns, opts...) })
}

// Apply merges through the inner tracker, then stores the result again so
// that it carries a fresh resourceVersion.
func (s *store) Apply(gvr schema.GroupVersionResource, cfg runtime.Object, ns string, opts ...metav1.PatchOptions) error {
	m, err := meta.Accessor(cfg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, err := s.inner.Get(gvr, ns, m.GetName())
	if err != nil {
		return err
	}
	if err := s.inner.Apply(gvr, cfg, ns, opts...); err != nil {
		return err
	}
	merged, err := s.inner.Get(gvr, ns, m.GetName())
	if err != nil {
		return err
	}
	return s.writeLocked(gvr, merged, prev, watch.Modified, func(o runtime.Object) error { return s.inner.Update(gvr, o, ns) })
}

// put stamps obj and writes it through write, publishing the change.
func (s *store) put(gvr schema.GroupVersionResource, obj runtime.Object, ns string, update bool, write func(runtime.Object) error) error {
	obj = obj.DeepCopyObject()
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	if m.GetNamespace() == "" {
		m.SetNamespace(ns)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var prev runtime.Object
	if update {
		if prev, err = s.inner.Get(gvr, m.GetNamespace(), m.GetName()); err != nil {
			return err
		}
	}
	typ := watch.Added
	if update {
		typ = watch.Modified
	}
	return s.writeLocked(gvr, obj, prev, typ, write)
}

// writeLocked gives obj the next resourceVersion (and, like the API server,
// a UID and creationTimestamp, kept across updates), writes it and publishes
// the event. s.mu must be held for writing; obj must be owned by the caller.
func (s *store) writeLocked(gvr schema.GroupVersionResource, obj, prev runtime.Object, typ watch.EventType, write func(runtime.Object) error) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	rv := s.rv + 1
	m.SetResourceVersion(strconv.FormatUint(rv, 10))
	if prev != nil {
		if pm, err := meta.Accessor(prev); err == nil {
			if m.GetUID() == "" {
				m.SetUID(pm.GetUID())
			}
			if m.GetCreationTimestamp().Time.IsZero() {
				m.SetCreationTimestamp(pm.GetCreationTimestamp())
			}
		}
	}
	if m.GetUID() == "" {
		m.SetUID(uuid.NewUUID())
	}
	if m.GetCreationTimestamp().Time.IsZero() {
		m.SetCreationTimestamp(metav1.NewTime(time.Now().Truncate(time.Second)))
	}
	if err := write(obj); err != nil {
		return err
	}
	s.rv = rv
	s.publishLocked(event{typ: typ, gvr: gvr, ns: m.GetNamespace(), rv: rv, obj: obj, prev: prev})
	return nil
}

// Delete removes an object; the DELETED event carries its last state with
// a new resourceVersion, as the API server's does.
func (s *store) Delete(gvr schema.GroupVersionResource, ns, name string, opts ...metav1.DeleteOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj, err := s.inner.Get(gvr, ns, name)
	if err != nil {
		return err
	}
	if err := s.inner.Delete(gvr, ns, name, opts...); err != nil {
		return err
	}
	s.rv++
	if m, err := meta.Accessor(obj); err == nil {
		m.SetResourceVersion(strconv.FormatUint(s.rv, 10))
	}
	s.publishLocked(event{typ: watch.Deleted, gvr: gvr, ns: ns, rv: s.rv, obj: obj})
	return nil
}

func (s *store) Get(gvr schema.GroupVersionResource, ns, name string, opts ...metav1.GetOptions) (runtime.Object, error) {
	return s.inner.Get(gvr, ns, name, opts...)
}

// List returns the objects with the list's resourceVersion set to the
// current counter, so a watch from it misses nothing.
func (s *store) List(gvr schema.GroupVersionResource, gvk schema.GroupVersionKind, ns string, opts ...metav1.ListOptions) (runtime.Object, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.listLocked(gvr, gvk, ns)
}

func (s *store) listLocked(gvr schema.GroupVersionResource, gvk schema.GroupVersionKind, ns string) (runtime.Object, error) {
	list, err := s.inner.List(gvr, gvk, ns)
	if err != nil {
		return nil, err
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		return nil, err
	}
	lm.SetResourceVersion(strconv.FormatUint(s.rv, 10))
	return list, nil
}

// Watch satisfies ObjectTracker for callers inside the process. Like
// client-go's tracker, existing objects are delivered only when list
// options are given: all of them for an empty or "0" resourceVersion, else
// the changes after it.
func (s *store) Watch(gvr schema.GroupVersionResource, ns string, opts ...metav1.ListOptions) (watch.Interface, error) {
	var snapshot bool
	var after *uint64
	if len(opts) > 0 {
		var err error
		if snapshot, after, err = startOf(opts[0]); err != nil {
			return nil, err
		}
	}
	gvk, err := kindFor(gvr)
	if err != nil {
		return nil, err
	}
	sub, initial, _, err := s.subscribe(gvr, gvk, ns, snapshot, after)
	if err != nil {
		return nil, err
	}
	out := make(chan watch.Event)
	w := watch.NewProxyWatcher(out)
	go func() {
		defer close(out)
		defer s.unsubscribe(sub)
		send := func(e event) bool {
			select {
			case out <- watch.Event{Type: e.typ, Object: e.obj.DeepCopyObject()}:
				return true
			case <-w.StopChan():
				return false
			}
		}
		for _, e := range initial {
			if !send(e) {
				return
			}
		}
		for {
			select {
			case e, ok := <-sub.ch:
				if !ok || !send(e) {
					return
				}
			case <-w.StopChan():
				return
			}
		}
	}()
	return w, nil
}

// subscribe registers for changes to gvr in ns ("" for all namespaces) and
// returns the events to deliver first: ADDED for every current object when
// snapshot is set, else the recorded changes after *after. rv is the
// counter at subscription time: nothing at or below it is still to come.
func (s *store) subscribe(gvr schema.GroupVersionResource, gvk schema.GroupVersionKind, ns string, snapshot bool, after *uint64) (sub *subscriber, initial []event, rv uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case snapshot:
		list, err := s.listLocked(gvr, gvk, ns)
		if err != nil {
			return nil, nil, 0, err
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return nil, nil, 0, err
		}
		for _, item := range items {
			initial = append(initial, event{typ: watch.Added, gvr: gvr, ns: ns, rv: s.rv, obj: item})
		}
	case after != nil:
		if *after < s.compacted {
			return nil, nil, 0, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", *after, s.compacted+1))
		}
		for _, e := range s.log {
			if e.rv > *after && e.gvr == gvr && (ns == "" || e.ns == ns) {
				initial = append(initial, e)
			}
		}
	}
	sub = &subscriber{gvr: gvr, ns: ns, ch: make(chan event, subscriberBuffer)}
	s.subs[sub] = struct{}{}
	return sub, initial, s.rv, nil
}

// unsubscribe closes sub's channel unless a write already dropped it.
func (s *store) unsubscribe(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked(sub)
}

func (s *store) dropLocked(sub *subscriber) {
	if _, ok := s.subs[sub]; ok {
		delete(s.subs, sub)
		close(sub.ch)
	}
}

// closeAll ends every watch; used when the server shuts down.
func (s *store) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		s.dropLocked(sub)
	}
}

func (s *store) publishLocked(e event) {
	s.log = append(s.log, e)
	if len(s.log) >= 2*keepEvents {
		drop := len(s.log) - keepEvents
		s.compacted = s.log[drop-1].rv
		s.log = append([]event(nil), s.log[drop:]...)
	}
	for sub := range s.subs {
		if sub.gvr != e.gvr || (sub.ns != "" && sub.ns != e.ns) {
			continue
		}
		select {
		case sub.ch <- e:
		default: // too slow: end its watch rather than block writers
			slog.Warn("fake apiserver: closing a watch that fell behind", "resource", e.gvr.Resource, "namespace", sub.ns)
			s.dropLocked(sub)
		}
	}
}

// kindFor finds the kind the scheme serves under gvr, the inverse of the
// guess client-go's tracker makes when objects are added.
func kindFor(gvr schema.GroupVersionResource) (schema.GroupVersionKind, error) {
	for gvk := range scheme.Scheme.AllKnownTypes() {
		if gvk.GroupVersion() != gvr.GroupVersion() {
			continue
		}
		if guess, _ := meta.UnsafeGuessKindToResource(gvk); guess == gvr {
			return gvk, nil
		}
	}
	return schema.GroupVersionKind{}, fmt.Errorf("no kind is registered for %v", gvr)
}
