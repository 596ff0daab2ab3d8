package podwatch

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/pfgateway/pfgateway/metrics"
	"github.com/pfgateway/pfgateway/session"
)

// msgCloser records what a session's closer was told.
type msgCloser struct{ msgs chan string }

func (c *msgCloser) Close() error { c.msgs <- ""; return nil }
func (c *msgCloser) CloseWithMessage(m string) error {
	c.msgs <- m
	return nil
}

type fixture struct {
	t       *testing.T
	client  *fake.Clientset
	reg     *session.Registry
	w       *Watcher
	mu      sync.Mutex
	watches map[string]int // watch requests by pod name
	lists   map[string]int
	watched chan string
	seen    map[string]int // watches noticed while waiting for another
	gets    int            // GET requests
}

func pod(name string, uid types.UID) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: uid}, Spec: corev1.PodSpec{NodeName: "node-1"}}
}

func newFixture(t *testing.T, pods ...runtime.Object) *fixture {
	f := &fixture{t: t, client: fake.NewClientset(pods...), watches: map[string]int{}, lists: map[string]int{}, watched: make(chan string, 64), seen: map[string]int{}}
	name := func(a k8stesting.Action) string {
		var sel string
		switch a := a.(type) {
		case k8stesting.WatchActionImpl:
			sel = a.WatchRestrictions.Fields.String()
		case k8stesting.ListActionImpl:
			sel = a.ListRestrictions.Fields.String()
		}
		return strings.TrimPrefix(sel, "metadata.name=")
	}
	f.client.PrependWatchReactor("pods", func(a k8stesting.Action) (bool, watch.Interface, error) {
		f.mu.Lock()
		f.watches[name(a)]++
		f.mu.Unlock()
		// The tracker's watch starts after this reactor returns; give it
		// the time to before the test changes the pod.
		go func() { time.Sleep(50 * time.Millisecond); f.watched <- name(a) }()
		return false, nil, nil
	})
	f.client.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		f.lists[name(a)]++
		f.mu.Unlock()
		return false, nil, nil
	})
	f.client.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		f.gets++
		f.mu.Unlock()
		return false, nil, nil
	})
	f.reg = session.NewRegistry(metrics.New(prometheus.NewRegistry()))
	f.w = New(f.client, "c1", Options{MinBackoff: 10 * time.Millisecond})
	f.reg.AddObserver(f.w)
	t.Cleanup(f.w.Stop)
	return f
}

// start begins and splices a session to pod name of uid on node-1.
func (f *fixture) start(name string, uid types.UID) (*session.Session, *msgCloser) {
	return f.startAt(name, uid, time.Time{})
}

// startAt is start for a session that began (and resolved its pod) at
// began; zero is now.
func (f *fixture) startAt(name string, uid types.UID, began time.Time) (*session.Session, *msgCloser) {
	s, err := f.reg.Begin(&session.Session{Cluster: "c1", Namespace: "default", Pod: name, Protocol: metrics.ProtocolSPDY, Start: began})
	if err != nil {
		f.t.Fatal(err)
	}
	s.SetNode("node-1")
	s.SetPodUID(uid)
	c := &msgCloser{msgs: make(chan string, 4)}
	s.Upgraded(c)
	return s, c
}

func (f *fixture) waitWatch(name string) {
	f.t.Helper()
	if f.seen[name] > 0 {
		f.seen[name]--
		return
	}
	for {
		select {
		case n := <-f.watched:
			if n == name {
				return
			}
			f.seen[n]++
		case <-time.After(5 * time.Second):
			f.t.Fatalf("no watch of pod %s", name)
		}
	}
}

func expectMessage(t *testing.T, c *msgCloser, want string) {
	t.Helper()
	select {
	case got := <-c.msgs:
		if got != want {
			t.Errorf("closed with %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("not closed; want %q", want)
	}
}

func expectOpen(t *testing.T, c *msgCloser) {
	t.Helper()
	select {
	case got := <-c.msgs:
		t.Errorf("closed with %q, want it open", got)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestOneWatchPerPodSharedAndStoppedWithTheLastSession(t *testing.T) {
	f := newFixture(t, pod("a", "ua"), pod("b", "ub"))
	a1, _ := f.start("a", "ua")
	a2, _ := f.start("a", "ua")
	b1, _ := f.start("b", "ub")
	f.waitWatch("a")
	f.waitWatch("b")
	if n := f.w.Watching(); n != 2 {
		t.Fatalf("watching %d pods, want 2", n)
	}
	f.mu.Lock()
	if f.watches["a"] != 1 || f.lists["a"] != 1 {
		t.Errorf("pod a: %d watches and %d lists for two sessions, want 1 and 1", f.watches["a"], f.lists["a"])
	}
	f.mu.Unlock()
	f.w.mu.Lock()
	pa := f.w.pods[podKey{"default", "a"}]
	f.w.mu.Unlock()

	a1.End(metrics.OutcomeCompleted, "")
	if n := f.w.Watching(); n != 2 {
		t.Fatalf("after one of a's two sessions ended: watching %d pods, want 2", n)
	}
	a2.End(metrics.OutcomeCompleted, "")
	select {
	case <-pa.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch of pod a did not stop with its last session")
	}
	if n := f.w.Watching(); n != 1 {
		t.Fatalf("watching %d pods, want 1", n)
	}
	b1.End(metrics.OutcomeCompleted, "")
	if n := f.w.Watching(); n != 0 {
		t.Fatalf("watching %d pods after every session ended", n)
	}
	// Not spliced, other cluster: ignored.
	s, _ := f.reg.Begin(&session.Session{Cluster: "c1", Namespace: "default", Pod: "a"})
	s.End(metrics.OutcomeRejected, "")
	other, _ := f.reg.Begin(&session.Session{Cluster: "c2", Namespace: "default", Pod: "a"})
	other.Upgraded(&msgCloser{msgs: make(chan string, 1)})
	if n := f.w.Watching(); n != 0 {
		t.Fatalf("watching %d pods for another cluster's session", n)
	}
	other.End(metrics.OutcomeCompleted, "")
}

func TestDeletedPodEndsItsSessionsOnly(t *testing.T) {
	f := newFixture(t, pod("a", "ua"), pod("b", "ub"))
	_, ca1 := f.start("a", "ua")
	_, ca2 := f.start("a", "ua")
	_, cb := f.start("b", "ub")
	f.waitWatch("a")
	f.waitWatch("b")
	if err := f.client.CoreV1().Pods("default").Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectMessage(t, ca1, "pfgateway: pod default/a was deleted")
	expectMessage(t, ca2, "pfgateway: pod default/a was deleted")
	expectOpen(t, cb)

	// A later session that resolved the deleted UID ends at once.
	_, late := f.start("a", "ua")
	expectMessage(t, late, "pfgateway: pod default/a was deleted")
}

func TestListDecidesForSessionsThatBeganBeforeIt(t *testing.T) {
	replacedMsg := "pfgateway: pod default/a was deleted and replaced by a new pod of the same name"
	for _, tc := range []struct {
		name string
		pods []runtime.Object
		want string
	}{
		{"pod gone before the watch began", nil, "pfgateway: pod default/a was deleted"},
		{"pod replaced before the watch began", []runtime.Object{pod("a", "new")}, replacedMsg},
		{"pod unchanged", []runtime.Object{pod("a", "ua")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.pods...)
			s, c := f.start("a", "ua")
			if tc.want == "" {
				f.waitWatch("a")
				expectOpen(t, c)
				return
			}
			expectMessage(t, c, tc.want)
			s.End(metrics.OutcomeCompleted, "")
			if n := f.w.Watching(); n != 0 {
				t.Errorf("watching %d pods after the session ended", n)
			}
		})
	}
}

// A session that joins a running watch may have resolved the pod before a
// change the watch's list already reflects: its own GET decides. One that
// began after the list answered is covered by the watch's events: no GET.
func TestLateSessionIsCheckedByItsOwnGet(t *testing.T) {
	f := newFixture(t, pod("a", "ua"))
	began := time.Now()
	_, first := f.start("a", "ua")
	f.waitWatch("a")
	// The pod is replaced between the late session's resolve (uid ua) and
	// its joining; the watch's events came and went before it joined.
	if err := f.client.CoreV1().Pods("default").Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectMessage(t, first, "pfgateway: pod default/a was deleted")
	if _, err := f.client.CoreV1().Pods("default").Create(context.Background(), pod("a", "ub"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, cur := f.start("a", "ub") // resolved the new pod: stays
	// Began before the watch's list, resolved uid uc, which a pod of the
	// same name has since replaced in no event the watch saw.
	_, stale := f.startAt("a", "uc", began)
	expectMessage(t, stale, "pfgateway: pod default/a was deleted and replaced by a new pod of the same name")
	expectOpen(t, cur)
	f.mu.Lock()
	gets := f.gets
	f.mu.Unlock()
	if gets != 1 {
		t.Errorf("%d GETs, want 1 (the stale session's; the others are covered by the list or the watch)", gets)
	}
}

func TestNodeDeletedEndsTheSessionsOnIt(t *testing.T) {
	f := newFixture(t, pod("a", "ua"))
	s, c := f.start("a", "ua")
	f.w.NodeDeleted("node-2")
	expectOpen(t, c)
	f.w.NodeDeleted("node-1")
	expectMessage(t, c, "pfgateway: node node-1 of pod default/a was deleted")
	s.End(metrics.OutcomeCompleted, "")
	f.w.mu.Lock()
	n := len(f.w.nodes)
	f.w.mu.Unlock()
	if n != 0 {
		t.Errorf("%d nodes indexed after the session ended", n)
	}
}

func TestFailedWatchIsRetriedWithAList(t *testing.T) {
	f := newFixture(t, pod("a", "ua"))
	var fails sync.Once
	f.client.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		handled := false
		fails.Do(func() { handled = true })
		if handled {
			return true, nil, context.DeadlineExceeded
		}
		return false, nil, nil
	})
	_, c := f.start("a", "ua")
	f.waitWatch("a") // the second attempt
	f.mu.Lock()
	lists := f.lists["a"]
	f.mu.Unlock()
	if lists != 2 {
		t.Errorf("%d lists, want 2 (the first, and one after the failed watch)", lists)
	}
	if err := f.client.CoreV1().Pods("default").Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectMessage(t, c, "pfgateway: pod default/a was deleted")
}
