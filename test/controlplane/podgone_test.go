package controlplane

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/pfgateway/pfgateway/devcluster/hashpod"
	"github.com/pfgateway/pfgateway/devcluster/kubelet"
)

// TestPodDeletedEndsSession: against the real API server (RBAC, a real
// watch with a field selector), a session whose pod is deleted ends within
// seconds, its open forwarded connection told why on its error stream.
func TestPodDeletedEndsSession(t *testing.T) {
	c := needControlPlane(t)
	g := c.startGateway(t)
	const name = "doomed"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	core := c.admin.CoreV1()
	no := false
	pod, err := core.Pods(namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{NodeName: nodeName, AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "main", Image: "pfgateway/hash"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}}}
	if _, err := core.Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.kubelet.SetPod(kubelet.Pod{Namespace: namespace, Name: name, UID: string(pod.UID), Ports: map[int32]string{podPort: c.hash.Addr()}})

	cfg := c.restConfig(g.addr, c.user(t, userAllowed))
	rt, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Host + "/api/v1/namespaces/" + namespace + "/pods/" + name + "/portforward")
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	errText, data := openStreams(t, conn, 0)
	if _, err := hashpod.Exchange(streamRW{data}, 1<<20, 1<<20, 77); err != nil {
		t.Fatalf("exchange before the deletion: %v", err)
	}
	errText, _ = openStreams(t, conn, 1) // left open

	start := time.Now()
	zero := int64(0)
	if err := core.Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	const want = "pfgateway: pod " + namespace + "/" + name + " was deleted"
	select {
	case got := <-errText:
		if got != want {
			t.Errorf("error stream of the open forward = %q, want %q", got, want)
		}
		t.Logf("the message came %v after the deletion", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("no message on the open forward's error stream 15s after the pod's deletion")
	}
	select {
	case <-conn.CloseChan():
	case <-time.After(10 * time.Second):
		t.Error("the session is still open 10s after the message")
	}
}

// openStreams opens one forwarded connection as client-go does (error
// stream created and half-closed, then the data stream) and returns the
// error stream's text, once it ends, and the data stream.
func openStreams(t *testing.T, conn httpstream.Connection, requestID int) (<-chan string, httpstream.Stream) {
	t.Helper()
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(podPort))
	h.Set(corev1.PortForwardRequestIDHeader, strconv.Itoa(requestID))
	es, err := conn.CreateStream(h)
	if err != nil {
		t.Fatal(err)
	}
	_ = es.Close()
	text := make(chan string, 1)
	go func() { b, _ := io.ReadAll(es); text <- string(b) }()
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	ds, err := conn.CreateStream(h)
	if err != nil {
		t.Fatal(err)
	}
	return text, ds
}

// streamRW is a data stream as the net.Conn hashpod.Exchange takes.
type streamRW struct{ s httpstream.Stream }

func (s streamRW) Read(b []byte) (int, error)       { return s.s.Read(b) }
func (s streamRW) Write(b []byte) (int, error)      { return s.s.Write(b) }
func (s streamRW) Close() error                     { return s.s.Reset() }
func (s streamRW) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (s streamRW) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (s streamRW) SetDeadline(time.Time) error      { return nil }
func (s streamRW) SetReadDeadline(time.Time) error  { return nil }
func (s streamRW) SetWriteDeadline(time.Time) error { return nil }
