package apiserver

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/devcluster/pki"
)

const wait = 10 * time.Second // bound on anything asynchronous

// fixture is a running server with the demo objects and a client config.
type fixture struct {
	srv    *Server
	cfg    *rest.Config
	caPEM  []byte
	client *http.Client
}

func demoObjects() []runtime.Object {
	labels := map[string]string{"app": "demo"}
	return []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default", Labels: labels},
			Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "web", Image: "nginx", Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "default", Labels: map[string]string{"app": "other"}},
			Spec:       corev1.PodSpec{NodeName: "node-2", Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
		},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default"},
			Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80}}},
		},
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}},
			},
		},
	}
}

func start(t *testing.T, gitVersion string) *fixture {
	t.Helper()
	ca, err := pki.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(pki.Loopback("apiserver"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Start(Options{
		TLS:        &tls.Config{Certificates: []tls.Certificate{kp.TLS}},
		GitVersion: gitVersion,
		Objects:    demoObjects(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	cfg := &rest.Config{Host: srv.URL(), TLSClientConfig: rest.TLSClientConfig{CAData: ca.CertPEM}}
	return &fixture{
		srv:    srv,
		cfg:    cfg,
		caPEM:  ca.CertPEM,
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}},
	}
}

func TestClientsetGetAndList(t *testing.T) {
	f := start(t, "")
	for _, contentType := range []string{"application/json", "application/vnd.kubernetes.protobuf"} {
		t.Run(contentType, func(t *testing.T) {
			cfg := rest.CopyConfig(f.cfg)
			cfg.ContentType = contentType
			cs := kubernetes.NewForConfigOrDie(cfg)
			ctx := context.Background()

			pod, err := cs.CoreV1().Pods("default").Get(ctx, "demo", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if pod.Spec.NodeName != "node-1" || pod.ResourceVersion == "" || pod.UID == "" {
				t.Errorf("pod = %+v, want node-1 with resourceVersion and uid", pod.ObjectMeta)
			}

			pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "app=demo"})
			if err != nil {
				t.Fatal(err)
			}
			if names := podNames(pods.Items); !slices.Equal(names, []string{"demo"}) || pods.ResourceVersion == "" {
				t.Errorf("list app=demo = %v (rv %q), want [demo] with a resourceVersion", names, pods.ResourceVersion)
			}
			pods, err = cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-2"})
			if err != nil {
				t.Fatal(err)
			}
			if names := podNames(pods.Items); !slices.Equal(names, []string{"other"}) {
				t.Errorf("list spec.nodeName=node-2 = %v, want [other]", names)
			}

			dep, err := cs.AppsV1().Deployments("default").Get(ctx, "demo", metav1.GetOptions{})
			if err != nil || dep.Spec.Selector.MatchLabels["app"] != "demo" {
				t.Errorf("deployment = %v, %v", dep, err)
			}

			_, err = cs.CoreV1().Pods("default").Get(ctx, "missing", metav1.GetOptions{})
			if !apierrors.IsNotFound(err) || err.Error() != `pods "missing" not found` {
				t.Errorf("get missing pod: %v, want NotFound", err)
			}

			reqs := f.srv.Requests()
			last := reqs[len(reqs)-1]
			if accept := last.Header.Get("Accept"); !strings.HasPrefix(accept, contentType) {
				t.Errorf("client sent Accept %q, want %s first", accept, contentType)
			}
		})
	}
}

func podNames(pods []corev1.Pod) []string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	return names
}

// TestContentNegotiation checks the media type chosen for each Accept.
func TestContentNegotiation(t *testing.T) {
	f := start(t, "")
	tests := []struct {
		accept, path, want string
	}{
		{"", "/api/v1/namespaces/default/pods/demo", "application/json"},
		{"application/vnd.kubernetes.protobuf,application/json", "/api/v1/namespaces/default/pods/demo", "application/vnd.kubernetes.protobuf"},
		{"application/vnd.kubernetes.protobuf, */*", "/api/v1/nodes", "application/vnd.kubernetes.protobuf"},
		{"application/json;as=Table;v=v1;g=meta.k8s.io,application/json", "/api/v1/namespaces/default/pods", "application/json"},
		{"application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", "/apis", "application/json"},
		{"application/vnd.kubernetes.protobuf", "/api/v1/nodes?watch=true&timeoutSeconds=1", "application/vnd.kubernetes.protobuf;stream=watch"},
		{"application/json", "/api/v1/nodes?watch=1&timeoutSeconds=1", "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.accept+" "+tt.path, func(t *testing.T) {
			resp := f.get(t, tt.path, tt.accept)
			if got := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || got != tt.want {
				t.Errorf("status %d, Content-Type %q, want 200 %q", resp.StatusCode, got, tt.want)
			}
		})
	}
}

func (f *fixture) get(t *testing.T, path, accept string) *http.Response {
	t.Helper()
	return f.do(t, http.MethodGet, path, accept)
}

func (f *fixture) do(t *testing.T, method, path, accept string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestDiscovery(t *testing.T) {
	f := start(t, "v1.31.2")
	dc, err := discovery.NewDiscoveryClientForConfig(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := dc.ServerVersion()
	if err != nil || v.Major != "1" || v.Minor != "31" || v.GitVersion != "v1.31.2" {
		t.Errorf("ServerVersion = %+v, %v", v, err)
	}
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]metav1.APIResource{}
	for _, l := range lists {
		for _, r := range l.APIResources {
			found[l.GroupVersion+" "+r.Name] = r
		}
	}
	tests := []struct {
		key, kind, short string
		namespaced       bool
	}{
		{"v1 pods", "Pod", "po", true},
		{"v1 services", "Service", "svc", true},
		{"v1 nodes", "Node", "no", false},
		{"v1 namespaces", "Namespace", "ns", false},
		{"v1 replicationcontrollers", "ReplicationController", "rc", true},
		{"apps/v1 deployments", "Deployment", "deploy", true},
		{"apps/v1 replicasets", "ReplicaSet", "rs", true},
		{"apps/v1 statefulsets", "StatefulSet", "sts", true},
		{"apps/v1 daemonsets", "DaemonSet", "ds", true},
	}
	for _, tt := range tests {
		r, ok := found[tt.key]
		if !ok || r.Kind != tt.kind || r.Namespaced != tt.namespaced || !slices.Contains(r.ShortNames, tt.short) || !slices.Contains(r.Verbs, "watch") {
			t.Errorf("%s = %+v (found %v), want kind %s namespaced %v short %s", tt.key, r, ok, tt.kind, tt.namespaced, tt.short)
		}
	}
	if _, ok := found["v1 pods/portforward"]; !ok {
		t.Error("pods/portforward missing from discovery")
	}
}

func TestVersion(t *testing.T) {
	f := start(t, "v1.33.1")
	resp := f.get(t, "/version", "")
	var v version.Info
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v.Major != "1" || v.Minor != "33" || v.GitVersion != "v1.33.1" || v.Platform != "linux/amd64" || v.GoVersion == "" {
		t.Errorf("version = %+v", v)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache, private" {
		t.Errorf("Cache-Control = %q", cc)
	}
	for _, p := range []string{"/healthz", "/readyz", "/livez"} {
		body, _ := io.ReadAll(f.get(t, p, "").Body)
		if string(body) != "ok" {
			t.Errorf("%s = %q, want ok", p, body)
		}
	}
}

func TestErrors(t *testing.T) {
	f := start(t, "")
	tests := []struct {
		method, path string
		code         int32
		reason       metav1.StatusReason
		message      string
	}{
		{"GET", "/api/v1/namespaces/default/pods/missing", 404, metav1.StatusReasonNotFound, `pods "missing" not found`},
		{"GET", "/api/v1/nodes/missing", 404, metav1.StatusReasonNotFound, `nodes "missing" not found`},
		{"GET", "/apis/apps/v1/namespaces/default/deployments/missing", 404, metav1.StatusReasonNotFound, `deployments.apps "missing" not found`},
		{"GET", "/api/v1/widgets", 404, metav1.StatusReasonNotFound, "the server could not find the requested resource"},
		{"GET", "/api/v1/pods/demo", 404, metav1.StatusReasonNotFound, "the server could not find the requested resource"},
		{"GET", "/api/v1/namespaces/default/pods/demo/log", 404, metav1.StatusReasonNotFound, "the server could not find the requested resource"},
		{"GET", "/nope", 404, metav1.StatusReasonNotFound, "the server could not find the requested resource"},
		{"POST", "/api/v1/namespaces/default/pods", 405, metav1.StatusReasonMethodNotAllowed, "the server does not allow this method on the requested resource"},
		{"DELETE", "/api/v1/namespaces/default/pods/demo", 405, metav1.StatusReasonMethodNotAllowed, "the server does not allow this method on the requested resource"},
		{"POST", "/api/v1/namespaces/default/pods/demo/portforward", 405, metav1.StatusReasonMethodNotAllowed, "the server does not allow this method on the requested resource"},
		{"GET", "/api/v1/pods?fieldSelector=spec.bogus%3Dx", 400, metav1.StatusReasonBadRequest, "field label not supported: spec.bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp := f.do(t, tt.method, tt.path, "")
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var st metav1.Status
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != int(tt.code) || st.Kind != "Status" || st.APIVersion != "v1" || st.Status != metav1.StatusFailure ||
				st.Code != tt.code || st.Reason != tt.reason || st.Message != tt.message {
				t.Errorf("HTTP %d %+v, want %d %s %q", resp.StatusCode, st, tt.code, tt.reason, tt.message)
			}
		})
	}
}

func TestRequestsRecorded(t *testing.T) {
	f := start(t, "")
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL()+"/api/v1/nodes?limit=500", nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := f.srv.Requests()
	if len(reqs) != 1 || reqs[0].Method != "GET" || reqs[0].Path != "/api/v1/nodes?limit=500" || reqs[0].Header.Get("Authorization") != "Bearer secret" {
		t.Errorf("Requests() = %+v", reqs)
	}
	reqs[0].Header.Set("Authorization", "changed")
	if f.srv.Requests()[0].Header.Get("Authorization") != "Bearer secret" {
		t.Error("Requests() shares headers with the server's record")
	}
}
