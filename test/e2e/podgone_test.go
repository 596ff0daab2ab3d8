package e2e

import (
	"maps"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/devcluster"
)

// podGoneBound is how soon a session must end once its pod or node is
// deleted: a watch event away, with room for a loaded CI machine.
const podGoneBound = 10 * time.Second

var (
	podsGVR  = corev1.SchemeGroupVersion.WithResource("pods")
	nodesGVR = corev1.SchemeGroupVersion.WithResource("nodes")
)

// replacePod deletes pod name and creates it again with a new UID, as a
// StatefulSet does when it recreates a pod.
func (e *env) replacePod(t *testing.T, name string) {
	t.Helper()
	tr := e.cluster.APIServer.Tracker()
	obj, err := tr.Get(podsGVR, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	p := obj.(*corev1.Pod).DeepCopy()
	if err := tr.Delete(podsGVR, "default", name); err != nil {
		t.Fatal(err)
	}
	p.UID, p.ResourceVersion = types.UID(string(p.UID)+"-2"), ""
	if err := tr.Add(p); err != nil {
		t.Fatal(err)
	}
}

// TestPodGoneEndsSessions: sessions whose pod is deleted, or deleted and
// replaced by a pod of the same name, or whose node is deleted, end within
// seconds; every open forwarded connection gets a message naming the cause
// on its error stream (SPDY and the WebSocket tunnel); sessions to other
// pods go on; a new session reaches the replacement pod. The metrics and
// the audit log name the outcome, and no goroutine or file descriptor is
// left behind (the per-pod watches stop with their last session).
func TestPodGoneEndsSessions(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "audit.log")
	e := newEnv(t, func(o *options.Options) { o.Audit.LogPath = logPath })
	for _, name := range []string{"doomed", "moved"} {
		e.addPod(devcluster.Pod{Name: name, Ports: map[int32]string{hashPort: e.hash.Addr()}})
	}
	// Warm up (lazily started goroutines stay), then count.
	e.openLive(t, dialSPDY, "hash").conn.Close()
	e.waitIdle(t)
	base := takeBaseline(t)

	doomed := []*liveForward{e.openLive(t, dialSPDY, "doomed"), e.openLive(t, dialTunnel, "doomed")}
	bystander := e.openLive(t, dialSPDY, "hash")
	moved := e.openLive(t, dialTunnel, "moved")

	t.Run("pod deleted", func(t *testing.T) {
		start := time.Now()
		if err := e.cluster.APIServer.Tracker().Delete(podsGVR, "default", "doomed"); err != nil {
			t.Fatal(err)
		}
		for _, l := range doomed {
			l.expectMessage(t, "pfgateway: pod default/doomed was deleted", podGoneBound)
		}
		t.Logf("both sessions got the message %v after the delete", time.Since(start).Round(time.Millisecond))
		bystander.expectOpen(t, 2)
	})
	t.Run("pod replaced", func(t *testing.T) {
		start := time.Now()
		e.replacePod(t, "moved")
		moved.expectMessage(t, "pfgateway: pod default/moved was deleted", podGoneBound)
		t.Logf("the session got the message %v after the replacement", time.Since(start).Round(time.Millisecond))
		bystander.expectOpen(t, 3)
	})
	// A session to the replacement pod is watched like any other.
	fresh := e.openLive(t, dialSPDY, "moved")
	t.Run("node deleted", func(t *testing.T) {
		start := time.Now()
		if err := e.cluster.APIServer.Tracker().Delete(nodesGVR, "", devcluster.NodeName); err != nil {
			t.Fatal(err)
		}
		for l, pod := range map[*liveForward]string{bystander: "hash", fresh: "moved"} {
			l.expectMessage(t, "pfgateway: node "+devcluster.NodeName+" of pod default/"+pod+" was deleted", podGoneBound)
		}
		t.Logf("both sessions got the message %v after the node's deletion", time.Since(start).Round(time.Millisecond))
	})
	e.waitIdle(t)

	base.check(t, "")

	want := map[string]float64{
		"outcome=pod_deleted,protocol=spdy": 1, "outcome=pod_deleted,protocol=websocket": 2,
		"outcome=node_deleted,protocol=spdy": 2, "outcome=completed,protocol=spdy": 1,
	}
	if got := nonZero(e.scrape(t).series(mSessions)); !maps.Equal(got, want) {
		t.Errorf("%s:%s\nwant:%s", mSessions, formatSeries(got), formatSeries(want))
	}
	fwd := e.scrape(t).value(mForwards, labels{"outcome": "session_closed"})
	if fwd != 5 {
		t.Errorf("%s{outcome=session_closed} = %g, want 5 (the open forward of each closed session)", mForwards, fwd)
	}

	if err := e.shutdown(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, ev := range auditEvents(t, logPath, http.StatusSwitchingProtocols) {
		if ev.Stage == auditv1.StageResponseComplete && ev.Annotations["pfgateway.io/port"] == "" {
			reasons[ev.Annotations["pfgateway.io/outcome"]+": "+ev.Annotations["pfgateway.io/close-reason"]]++
		}
	}
	wantReasons := map[string]int{
		"pod_deleted: pod default/doomed (uid uid-default-doomed) was deleted": 2,
		"pod_deleted: pod default/moved (uid uid-default-moved) was deleted":   1,
		"node_deleted: node dev-node of pod default/hash was deleted":          1,
		"node_deleted: node dev-node of pod default/moved was deleted":         1,
	}
	for k, n := range wantReasons {
		if reasons[k] != n {
			t.Errorf("audit: %d session-end events %q, want %d (all: %v)", reasons[k], k, n, reasons)
		}
	}
}
