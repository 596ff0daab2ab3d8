package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pfgateway/pfgateway/devcluster"
)

// Header sets for raw requests: what each client sends to start its protocol.
var (
	spdyUpgrade = http.Header{
		"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}, "X-Stream-Protocol-Version": {"portforward.k8s.io"},
	}
	legacyUpgrade = http.Header{
		"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Protocol": {v4Binary},
	}
)

// rawResponse is a gateway answer to a raw request.
type rawResponse struct {
	code    int
	body    string
	status  *metav1.Status // nil when the body is not a Status
	header  http.Header
	elapsed time.Duration
}

// raw sends one request to the gateway with Go's HTTP client, as alice (or
// with no client certificate), and decodes a metav1.Status answer.
func (e *env) raw(t testing.TB, method, path string, h http.Header, withCert bool) rawResponse {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: e.tlsConfig(withCert), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	req, err := http.NewRequest(method, "https://"+e.gw.Addr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = append([]string(nil), vs...)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	r := rawResponse{code: resp.StatusCode, body: string(b), header: resp.Header, elapsed: time.Since(start)}
	var st metav1.Status
	if json.Unmarshal(b, &st) == nil && st.Kind == "Status" {
		r.status = &st
	}
	return r
}

// addNode adds a node whose kubelet is at 127.0.0.1:port.
func (e *env) addNode(name string, port int) {
	e.t.Helper()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	if err := e.cluster.Add(n); err != nil {
		e.t.Fatalf("adding node %s: %v", name, err)
	}
}

// addPodOn adds a Running pod on node (in the API server; AddPod also tells
// the dev kubelet, which is harmless for pods on other nodes).
func (e *env) addPodOn(name, node string) {
	e.t.Helper()
	e.addPod(devcluster.Pod{Name: name, NodeName: &node, Ports: map[int32]string{hashPort: e.hash.Addr()}})
}

// addAPIOnlyPod adds a Running pod on the dev node that the kubelet does not
// know, so the kubelet answers its port-forward with 404.
func (e *env) addAPIOnlyPod(name string) {
	e.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-api-only-" + name)},
		Spec:       corev1.PodSpec{NodeName: devcluster.NodeName, Containers: []corev1.Container{{Name: "main", Image: "pfgateway/dev"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if err := e.cluster.Add(p); err != nil {
		e.t.Fatalf("adding pod %s: %v", name, err)
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return port
}

// silentListener accepts TCP connections and never writes or reads: a
// kubelet that hangs before its TLS handshake.
func silentListener(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		for _, c := range held {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().(*net.TCPAddr).Port
}
