package apiserver

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// listThenWatch hides watch-list support from the reflector, which then
// lists and watches as it did before the WatchListClient feature.
type listThenWatch struct{ cache.ListerWatcher }

func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }

// TestNodeInformer runs a node informer both ways client-go's reflector
// fills its cache: the watch-list stream (default since client-go 1.35) and
// list then watch.
func TestNodeInformer(t *testing.T) {
	tests := []struct {
		name      string
		informer  func(kubernetes.Interface) (cache.SharedIndexInformer, func(<-chan struct{}), func())
		firstPath string
	}{
		{
			name: "shared informer factory",
			informer: func(cs kubernetes.Interface) (cache.SharedIndexInformer, func(<-chan struct{}), func()) {
				factory := informers.NewSharedInformerFactory(cs, 0)
				return factory.Core().V1().Nodes().Informer(), factory.Start, factory.Shutdown
			},
			firstPath: "/api/v1/nodes?allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&",
		},
		{
			name: "list then watch",
			informer: func(cs kubernetes.Interface) (cache.SharedIndexInformer, func(<-chan struct{}), func()) {
				lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "nodes", "", fields.Everything())
				inf := cache.NewSharedIndexInformer(listThenWatch{lw}, &corev1.Node{}, 0, cache.Indexers{})
				return inf, inf.Run, func() {}
			},
			firstPath: "/api/v1/nodes?limit=500&resourceVersion=0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, "")
			informer, run, shutdown := tt.informer(kubernetes.NewForConfigOrDie(f.cfg))
			events := make(chan string, 100)
			_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc: func(obj any) { events <- "add " + obj.(*corev1.Node).Name },
				UpdateFunc: func(_, obj any) {
					events <- "update " + obj.(*corev1.Node).Name + " " + obj.(*corev1.Node).Labels["zone"]
				},
				DeleteFunc: func(obj any) {
					if n, ok := obj.(*corev1.Node); ok {
						events <- "delete " + n.Name
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			go run(ctx.Done())
			defer func() {
				cancel()
				shutdown()
			}()
			if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
				t.Fatal("node informer did not sync")
			}
			expect(t, events, "add node-1")

			tracker := f.srv.Tracker()
			nodes := corev1.SchemeGroupVersion.WithResource("nodes")
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}}
			if err := tracker.Add(node); err != nil {
				t.Fatal(err)
			}
			expect(t, events, "add node-2")
			node.Labels = map[string]string{"zone": "b"}
			if err := tracker.Update(nodes, node, ""); err != nil {
				t.Fatal(err)
			}
			expect(t, events, "update node-2 b")
			if err := tracker.Delete(nodes, "", "node-2"); err != nil {
				t.Fatal(err)
			}
			expect(t, events, "delete node-2")

			if first := f.srv.Requests()[0].Path; !strings.HasPrefix(first, tt.firstPath) {
				t.Errorf("first request %s, want %s...", first, tt.firstPath)
			}
		})
	}
}

func expect(t *testing.T, events <-chan string, want string) {
	t.Helper()
	select {
	case got := <-events:
		if got != want {
			t.Fatalf("event %q, want %q", got, want)
		}
	case <-time.After(wait):
		t.Fatalf("no event within %v, want %q", wait, want)
	}
}

// TestListThenWatch covers the classic reflector path and the selector
// translation of the watch cache.
func TestListThenWatch(t *testing.T) {
	f := start(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	pods := kubernetes.NewForConfigOrDie(f.cfg).CoreV1().Pods("default")
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "app=demo"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: "app=demo", ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	podsGVR := corev1.SchemeGroupVersion.WithResource("pods")
	tracker := f.srv.Tracker()
	other, err := tracker.Get(podsGVR, "default", "other")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		labels map[string]string
		want   watch.EventType
	}{
		{map[string]string{"app": "demo"}, watch.Added},
		{map[string]string{"app": "demo", "tier": "web"}, watch.Modified},
		{map[string]string{"app": "gone"}, watch.Deleted},
	}
	for _, step := range steps {
		p := other.DeepCopyObject().(*corev1.Pod)
		p.Labels = step.labels
		if err := tracker.Update(podsGVR, p, "default"); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-w.ResultChan():
			if ev.Type != step.want || ev.Object.(*corev1.Pod).Name != "other" {
				t.Fatalf("labels %v: event %s %v, want %s other", step.labels, ev.Type, ev.Object, step.want)
			}
		case <-ctx.Done():
			t.Fatalf("labels %v: no event", step.labels)
		}
	}
}

// TestWatchResume checks where watches start: after a resourceVersion still
// kept, 410 Gone once it has been compacted away, and the in-process
// Tracker().Watch.
func TestWatchResume(t *testing.T) {
	f := start(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	nodesGVR := corev1.SchemeGroupVersion.WithResource("nodes")
	nodes := kubernetes.NewForConfigOrDie(f.cfg).CoreV1().Nodes()
	list, err := nodes.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inProcess, err := f.srv.Tracker().Watch(nodesGVR, "")
	if err != nil {
		t.Fatal(err)
	}
	defer inProcess.Stop()
	if err := f.srv.Tracker().Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-inProcess.ResultChan():
		if ev.Type != watch.Added || ev.Object.(*corev1.Node).Name != "node-2" {
			t.Errorf("Tracker().Watch: %s %v, want ADDED node-2", ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("Tracker().Watch: no event")
	}
	inProcess.Stop()

	// A watch from the list's resourceVersion replays what happened since.
	w, err := nodes.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		if n, _ := ev.Object.(*corev1.Node); ev.Type != watch.Added || n == nil || n.Name != "node-2" {
			t.Errorf("resumed watch: %s %v, want ADDED node-2", ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("resumed watch: no event")
	}
	w.Stop()

	// Enough changes elsewhere push the list's resourceVersion out of history.
	pod, err := f.srv.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), "default", "other")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 * keepEvents {
		if err := f.srv.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), pod, "default"); err != nil {
			t.Fatal(err)
		}
	}
	_, err = nodes.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Errorf("watch from compacted resourceVersion: %v, want 410 Expired", err)
	}
}

// TestSlowWatcher checks that a watcher which stops reading is closed
// instead of blocking writers or panicking, as client-go's fake watchers do.
func TestSlowWatcher(t *testing.T) {
	f := start(t, "")
	w, err := f.srv.Tracker().Watch(corev1.SchemeGroupVersion.WithResource("nodes"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for i := range 2 * subscriberBuffer {
		if err := f.srv.Tracker().Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("n", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got := 0
	for {
		select {
		case _, ok := <-w.ResultChan():
			if !ok {
				if got == 0 || got > subscriberBuffer+1 {
					t.Errorf("received %d events before the close, want 1..%d", got, subscriberBuffer+1)
				}
				return
			}
			got++
		case <-ctx.Done():
			t.Fatalf("watch not closed after %d events", got)
		}
	}
}
