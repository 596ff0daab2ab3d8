package resolve

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func pod(name, node string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
}

func node(name string, port int32, addrs ...corev1.NodeAddress) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: addrs}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = port
	return n
}

func TestResolve(t *testing.T) {
	objs := []runtime.Object{
		pod("web", "n1", corev1.PodRunning),
		pod("fallback", "n2", corev1.PodRunning),
		pod("pending", "n1", corev1.PodPending),
		pod("unscheduled", "", corev1.PodPending),
		pod("lost", "gone", corev1.PodRunning),
		pod("noaddr", "n3", corev1.PodRunning),
		pod("late", "n4", corev1.PodRunning),
		node("n1", 10255, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.1"}, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}),
		node("n2", 0, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "fd00::2"}),
		node("n3", 0, corev1.NodeAddress{Type: corev1.NodeExternalDNS, Address: "n3.example"}),
	}
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	lister := factory.Core().V1().Nodes().Lister()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	// n4 exists in the API but not yet in the cache: the resolver must GET it.
	if err := client.Tracker().Add(node("n4", 0, corev1.NodeAddress{Type: corev1.NodeHostName, Address: "n4"})); err != nil {
		t.Fatal(err)
	}
	r := &Resolver{Client: client, Nodes: lister, AddressTypes: []corev1.NodeAddressType{corev1.NodeHostName, corev1.NodeInternalIP}, DefaultPort: 10250, RequireRunning: true}

	tests := []struct {
		name     string
		pod      string
		wantURL  string
		wantCode int32
		wantMsg  string
	}{
		{name: "should use the preferred address type and the published port", pod: "web", wantURL: "https://10.0.0.1:10255/portForward/ns/web"},
		{name: "should fall back to the default port and bracket IPv6", pod: "fallback", wantURL: "https://[fd00::2]:10250/portForward/ns/fallback"},
		{name: "should GET a node missing from the cache", pod: "late", wantURL: "https://n4:10250/portForward/ns/late"},
		{name: "should pass the API server's 404 for an unknown pod", pod: "nope", wantCode: 404, wantMsg: `pods "nope" not found`},
		{name: "should refuse an unscheduled pod", pod: "unscheduled", wantCode: 400, wantMsg: "pod unscheduled does not have a host assigned"},
		{name: "should refuse a pod that is not running", pod: "pending", wantCode: 400, wantMsg: "pod is not running. Current status=Pending"},
		{name: "should 404 a missing node", pod: "lost", wantCode: 404, wantMsg: `nodes "gone" not found`},
		{name: "should 500 a node without a preferred address", pod: "noaddr", wantCode: 500, wantMsg: "no preferred addresses found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Resolve(context.Background(), "ns", tt.pod)
			if tt.wantCode != 0 {
				st, ok := err.(apierrors.APIStatus)
				if !ok || st.Status().Code != tt.wantCode || !strings.Contains(st.Status().Message, tt.wantMsg) {
					t.Fatalf("got %v, want %d %q", err, tt.wantCode, tt.wantMsg)
				}
				return
			}
			if err != nil || got.URL.String() != tt.wantURL {
				t.Fatalf("got %v, %v; want %s", got, err, tt.wantURL)
			}
		})
	}
}

func TestParseAddressTypes(t *testing.T) {
	if _, err := ParseAddressTypes(nil); err == nil {
		t.Fatal("empty list accepted")
	}
	if _, err := ParseAddressTypes([]string{"InternalIP", "Bogus"}); err == nil || !strings.Contains(err.Error(), "Bogus") {
		t.Fatalf("got %v", err)
	}
	got, err := ParseAddressTypes([]string{"ExternalIP", "InternalIP"})
	if err != nil || len(got) != 2 || got[0] != corev1.NodeExternalIP {
		t.Fatalf("got %v, %v", got, err)
	}
}
