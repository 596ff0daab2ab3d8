package podwatch

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/session"
)

// Options tune the watches; zero values take the defaults.
type Options struct {
	// RequestTimeout bounds each list and get (10s).
	RequestTimeout time.Duration
	// WatchTimeout is the server-side length of one watch request, jittered
	// up to twice as long (5m); the watch then resumes from the last event.
	WatchTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a failed list or
	// watch is retried (1s, 30s).
	MinBackoff, MaxBackoff time.Duration
}

func (o *Options) defaults() {
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.WatchTimeout <= 0 {
		o.WatchTimeout = 5 * time.Minute
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
}

// maxDead bounds the UIDs a watch remembers as gone: a name is reused only
// when a pod is replaced, a few times in a session's life at most.
const maxDead = 16

// podWatch is the watch of one pod, shared by its sessions. The fields
// other than key, cancel and done are protected by the Watcher's mu.
//
// Written by hand rather than with an informer: it needs to know which
// sessions began before each list (the list's answer holds for those),
// and an informer's cache, resyncs and WatchList semantics buy nothing for
// one object.
type podWatch struct {
	key      podKey
	sessions map[*session.Session]types.UID // the pod UID each resolved to
	// listStarted: a list has begun. listing: one is in flight.
	// listDone: when the last one answered; the watch has followed every
	// change since (or a list will come again, covering who joined).
	listStarted, listing bool
	listDone             time.Time
	dead                 []deadUID // UIDs known gone, oldest first

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

type deadUID struct {
	uid types.UID
	why gone
}

func (w *Watcher) newPodWatch(k podKey) *podWatch {
	ctx, cancel := context.WithCancel(context.Background())
	return &podWatch{key: k, sessions: map[*session.Session]types.UID{}, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// deadReason says whether uid is known gone and how (w.mu held).
func (pw *podWatch) deadReason(uid types.UID) (gone, bool) {
	for _, d := range pw.dead {
		if d.uid == uid && uid != "" {
			return d.why, true
		}
	}
	return 0, false
}

// markDead records uid as gone and returns the sessions to end (w.mu held).
func (pw *podWatch) markDead(uid types.UID, why gone) []*session.Session {
	if uid == "" {
		return nil
	}
	if _, known := pw.deadReason(uid); !known {
		if len(pw.dead) == maxDead {
			pw.dead = append(pw.dead[:0], pw.dead[1:]...)
		}
		pw.dead = append(pw.dead, deadUID{uid, why})
	}
	return pw.victimsOf(uid)
}

func (w *Watcher) closeAll(pw *podWatch, victims []*session.Session, why gone) {
	for _, s := range victims {
		go w.closePodSession(pw, s, why)
	}
}

// run lists and watches the pod until the last session leaves.
func (w *Watcher) run(pw *podWatch) {
	defer close(pw.done)
	backoff := w.o.MinBackoff
	rv := ""
	for pw.ctx.Err() == nil {
		var err error
		if rv == "" {
			rv, err = w.list(pw)
		}
		if err == nil {
			rv, err = w.watch(pw, rv)
		}
		if err == nil {
			backoff = w.o.MinBackoff
			continue // the watch timed out: resume from its last event
		}
		if pw.ctx.Err() != nil {
			return
		}
		klog.V(2).InfoS("Pod watch failed; retrying", "cluster", w.cluster, "namespace", pw.key.namespace, "pod", pw.key.name, "err", err, "backoff", backoff)
		rv = "" // relist: events may have been missed
		select {
		case <-pw.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.o.MaxBackoff)
	}
}

func (pw *podWatch) selector() string {
	return fields.OneTermEqualSelector("metadata.name", pw.key.name).String()
}

// list reads the pod; its answer holds for every session that joined
// before the list began (their resolve came first). It returns the list's
// resourceVersion to watch from.
func (w *Watcher) list(pw *podWatch) (string, error) {
	w.mu.Lock()
	pw.listStarted, pw.listing = true, true
	covered := make(map[*session.Session]types.UID, len(pw.sessions))
	for s, uid := range pw.sessions {
		covered[s] = uid
	}
	w.mu.Unlock()

	ctx, cancel := context.WithTimeout(pw.ctx, w.o.RequestTimeout)
	defer cancel()
	l, err := w.client.CoreV1().Pods(pw.key.namespace).List(ctx, metav1.ListOptions{FieldSelector: pw.selector()})
	done := time.Now()
	if err != nil {
		w.mu.Lock()
		pw.listing = false
		w.mu.Unlock()
		return "", err
	}
	var pod *corev1.Pod
	for i := range l.Items {
		if l.Items[i].Name == pw.key.name {
			pod = &l.Items[i]
		}
	}
	w.mu.Lock()
	pw.listing, pw.listDone = false, done
	var gones []gone
	var victims []*session.Session
	for s, uid := range covered {
		if _, live := pw.sessions[s]; !live || (pod != nil && (uid == pod.UID || uid == "")) {
			continue
		}
		why := deleted
		if pod != nil {
			why = replaced
		}
		pw.markDead(uid, why)
		victims, gones = append(victims, s), append(gones, why)
	}
	w.mu.Unlock()
	for i, s := range victims {
		go w.closePodSession(pw, s, gones[i])
	}
	return l.ResourceVersion, nil
}

// watch follows the pod's changes from rv until the request ends. A nil
// error means the server ended it (its timeout); the returned rv is where
// to resume.
func (w *Watcher) watch(pw *podWatch, rv string) (string, error) {
	timeout := int64((w.o.WatchTimeout + rand.N(w.o.WatchTimeout)) / time.Second)
	wi, err := w.client.CoreV1().Pods(pw.key.namespace).Watch(pw.ctx, metav1.ListOptions{
		FieldSelector: pw.selector(), ResourceVersion: rv, TimeoutSeconds: &timeout,
	})
	if err != nil {
		return "", err
	}
	defer wi.Stop()
	for {
		var ev watch.Event
		var ok bool
		select {
		case <-pw.ctx.Done():
			return "", pw.ctx.Err()
		case ev, ok = <-wi.ResultChan():
		}
		if !ok {
			return rv, nil
		}
		if ev.Type == watch.Error {
			return "", apierrors.FromObject(ev.Object)
		}
		pod, isPod := ev.Object.(*corev1.Pod)
		if !isPod {
			continue // a bookmark of another kind: not asked for
		}
		rv = pod.ResourceVersion
		if pod.Name != pw.key.name {
			continue
		}
		w.event(pw, ev.Type, pod)
	}
}

// event applies one change of the pod. Only a deletion counts: within one
// watch, a pod replaced under the same name is always a DELETED event
// before the new pod's ADDED, and an event for a UID other than a
// session's may be older than that session's resolve, so it proves
// nothing. Across watches, the list (or a session's own GET) decides.
func (w *Watcher) event(pw *podWatch, typ watch.EventType, pod *corev1.Pod) {
	if typ != watch.Deleted {
		return
	}
	w.mu.Lock()
	victims := pw.markDead(pod.UID, deleted)
	w.mu.Unlock()
	w.closeAll(pw, victims, deleted)
}

// check GETs the pod for a session that joined after the watch's list:
// a change between its resolve and that list is in no event.
func (w *Watcher) check(pw *podWatch, s *session.Session, uid types.UID) {
	ctx, cancel := context.WithTimeout(pw.ctx, w.o.RequestTimeout)
	defer cancel()
	pod, err := w.client.CoreV1().Pods(pw.key.namespace).Get(ctx, pw.key.name, metav1.GetOptions{})
	why := deleted
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		if !errors.Is(err, context.Canceled) {
			klog.V(2).InfoS("Pod check failed", "cluster", w.cluster, "namespace", pw.key.namespace, "pod", pw.key.name, "err", err)
		}
		return
	case pod.UID == uid:
		return
	default:
		why = replaced
	}
	w.mu.Lock()
	_, live := pw.sessions[s]
	if live {
		pw.markDead(uid, why)
	}
	w.mu.Unlock()
	if live {
		w.closePodSession(pw, s, why)
	}
}
