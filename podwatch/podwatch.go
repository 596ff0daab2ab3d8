// Package podwatch ends live port-forward sessions within seconds when
// their pod is deleted or replaced (same name, new UID) or its node is
// deleted, telling the client why, instead of leaving them to hang until
// the kubelet or the client notices (teleport#54814).
//
// It watches only the pods that have live sessions: one watch per pod
// (fieldSelector metadata.name), shared by every session to that pod and
// stopped when the last one ends. A gateway in front of a big cluster thus
// holds a handful of single-object watches instead of every pod of the
// cluster in an informer's cache. Nodes come from the gateway's node
// informer, which it has anyway (WatchNodes).
package podwatch

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/relay"
	"github.com/pfgateway/pfgateway/session"
)

// Watcher ends the sessions of one cluster whose pod or node went away. It
// is a session.Observer: the registry tells it when sessions are spliced
// and when they end (Registry.AddObserver). One per cluster.
type Watcher struct {
	client  kubernetes.Interface
	cluster string
	o       Options

	mu    sync.Mutex // protects the fields below
	pods  map[podKey]*podWatch
	nodes map[string]map[*session.Session]struct{}
}

var _ session.Observer = (*Watcher)(nil)

type podKey struct{ namespace, name string }

// New returns a Watcher for the sessions of cluster, whose API server
// client is client.
func New(client kubernetes.Interface, cluster string, o Options) *Watcher {
	o.defaults()
	return &Watcher{client: client, cluster: cluster, o: o, pods: map[podKey]*podWatch{}, nodes: map[string]map[*session.Session]struct{}{}}
}

// SessionStarted starts watching the session's pod, or joins the watch
// already running for it.
func (w *Watcher) SessionStarted(s *session.Session) {
	if s.Cluster != w.cluster {
		return
	}
	uid, node := s.PodUID(), s.Node()
	k := podKey{s.Namespace, s.Pod}
	w.mu.Lock()
	pw := w.pods[k]
	start := pw == nil
	if start {
		pw = w.newPodWatch(k)
		w.pods[k] = pw
	}
	pw.sessions[s] = uid
	if node != "" {
		if w.nodes[node] == nil {
			w.nodes[node] = map[*session.Session]struct{}{}
		}
		w.nodes[node][s] = struct{}{}
	}
	why, dead := pw.deadReason(uid)
	// A list not yet begun covers the session: it begins after its resolve.
	// A session that began (and so resolved) after the last list answered
	// is covered by the watch's events since, or by the next list if the
	// watch broke. Left is a session that began before a list that has
	// begun: a change between its resolve and that list is in no event,
	// and one GET closes the gap.
	check := !dead && uid != "" && pw.listStarted && (pw.listing || !pw.listDone.Before(s.Start))
	w.mu.Unlock()

	if start {
		go w.run(pw)
	}
	switch {
	case dead:
		go w.closePodSession(pw, s, why)
	case check:
		go w.check(pw, s, uid)
	}
}

// SessionEnded drops the session; the last one of a pod stops its watch.
func (w *Watcher) SessionEnded(s *session.Session, _ session.Ended) {
	if s.Cluster != w.cluster {
		return
	}
	k := podKey{s.Namespace, s.Pod}
	w.mu.Lock()
	defer w.mu.Unlock()
	pw := w.pods[k]
	if pw == nil {
		return
	}
	if _, ok := pw.sessions[s]; !ok {
		return // never spliced
	}
	delete(pw.sessions, s)
	if len(pw.sessions) == 0 {
		pw.cancel()
		delete(w.pods, k)
	}
	for node, ss := range w.nodes {
		if _, ok := ss[s]; ok {
			delete(ss, s)
			if len(ss) == 0 {
				delete(w.nodes, node)
			}
			break
		}
	}
}

// Forwarded is not needed here.
func (w *Watcher) Forwarded(*session.Session, relay.Record) {}

// Watching is the number of pods watched now.
func (w *Watcher) Watching() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pods)
}

// Stop stops every watch and waits for them; sessions still live are no
// longer watched. The gateway does not need it (its drain ends every
// session, which stops every watch); tests do.
func (w *Watcher) Stop() {
	w.mu.Lock()
	pws := make([]*podWatch, 0, len(w.pods))
	for k, pw := range w.pods {
		pw.cancel()
		pws = append(pws, pw)
		delete(w.pods, k)
	}
	w.nodes = map[string]map[*session.Session]struct{}{}
	w.mu.Unlock()
	for _, pw := range pws {
		<-pw.done
	}
}

// WatchNodes ends the sessions to pods of a node when the node is deleted;
// inf is the gateway's node informer for this cluster.
func (w *Watcher) WatchNodes(inf cache.SharedIndexInformer) error {
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if n, ok := obj.(*corev1.Node); ok {
			w.NodeDeleted(n.Name)
		}
	}})
	return err
}

// NodeDeleted ends every session to a pod of node.
func (w *Watcher) NodeDeleted(node string) {
	w.mu.Lock()
	victims := make([]*session.Session, 0, len(w.nodes[node]))
	for s := range w.nodes[node] {
		victims = append(victims, s)
	}
	w.mu.Unlock()
	for _, s := range victims {
		go s.ForceClose(metrics.OutcomeNodeDeleted,
			fmt.Sprintf("node %s of pod %s/%s was deleted", node, s.Namespace, s.Pod),
			fmt.Sprintf("pfgateway: node %s of pod %s/%s was deleted", node, s.Namespace, s.Pod))
	}
}

// gone says how a pod UID went away.
type gone int

const (
	deleted  gone = iota + 1
	replaced      // another pod of the same name took its place
)

// closePodSession ends s because its pod went away.
func (w *Watcher) closePodSession(pw *podWatch, s *session.Session, why gone) {
	pod := pw.key.namespace + "/" + pw.key.name
	uid := s.PodUID()
	reason := fmt.Sprintf("pod %s (uid %s) was deleted", pod, uid)
	msg := fmt.Sprintf("pfgateway: pod %s was deleted", pod)
	if why == replaced {
		reason = fmt.Sprintf("pod %s (uid %s) was replaced by a new pod of the same name", pod, uid)
		msg = fmt.Sprintf("pfgateway: pod %s was deleted and replaced by a new pod of the same name", pod)
	}
	if s.ForceClose(metrics.OutcomePodDeleted, reason, msg) {
		klog.InfoS("Pod of a live session is gone: closing the session", "sessionID", s.ID, "namespace", pw.key.namespace, "pod", pw.key.name, "podUID", uid, "replaced", why == replaced)
	}
}

// victimsOf lists the sessions whose pod is uid (w.mu held); sessions whose
// pod UID is unknown end with any pod of the name.
func (pw *podWatch) victimsOf(uid types.UID) []*session.Session {
	var out []*session.Session
	for s, su := range pw.sessions {
		if su == uid || su == "" {
			out = append(out, s)
		}
	}
	return out
}
