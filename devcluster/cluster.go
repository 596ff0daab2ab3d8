// Package devcluster runs a self-contained cluster on loopback for the demo
// and the end-to-end tests: a CA, an in-memory API server, a kubelet built on
// the real CRI streaming server, one node and pods whose ports map to local
// TCP servers. Everything it needs on disk (certificates, kubeconfigs) is
// written to one directory.
package devcluster

import (
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/pfgateway/pfgateway/devcluster/apiserver"
	"github.com/pfgateway/pfgateway/devcluster/kubelet"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// NodeName is the one node of a dev cluster.
const NodeName = "dev-node"

// Options configure a dev cluster.
type Options struct {
	// Dir receives certificates and kubeconfigs; it must exist.
	Dir string
	// GitVersion is what /version reports, e.g. "v1.33.0". kubectl's version
	// dispatcher picks its binary by this minor.
	GitVersion string
	// StreamCreationTimeout and StreamIdleTimeout are the kubelet's
	// port-forward timeouts (kubelet.Options); zero keeps the kubelet's
	// defaults (30s and 4h). Tests shorten them to observe the expiry.
	StreamCreationTimeout time.Duration
	StreamIdleTimeout     time.Duration
	// ForwardLinger is the kubelet's wait for a forward's second direction
	// (kubelet.Options); zero keeps containerd's 1 s.
	ForwardLinger time.Duration
	// CA, when set, signs this cluster's certificates instead of a new CA
	// of its own, so one gateway's kubelet client certificate is accepted
	// by the kubelets of several dev clusters.
	CA *pki.CA
}

// Files are the paths a gateway is configured with.
type Files struct {
	CA                string // signs every certificate below
	ServingCert       string // the gateway's, for 127.0.0.1/localhost
	ServingKey        string
	KubeletClientCert string // the gateway's client certificate for kubelets
	KubeletClientKey  string
	GatewayKubeconfig string // the gateway's access to the API server
}

// Cluster is a running dev cluster.
type Cluster struct {
	CA        *pki.CA
	APIServer *apiserver.Server
	Kubelet   *kubelet.Kubelet
	Files     Files
	dir       string
}

// Start brings a dev cluster up with one Ready node and no pods.
func Start(o Options) (*Cluster, error) {
	if o.GitVersion == "" {
		o.GitVersion = "v1.33.0"
	}
	c := &Cluster{dir: o.Dir, CA: o.CA}
	var err error
	if c.CA == nil {
		if c.CA, err = pki.NewCA("pfgateway-dev-ca"); err != nil {
			return nil, err
		}
	}
	apiCert, err := c.CA.Issue(pki.Loopback("dev-apiserver"))
	if err != nil {
		return nil, err
	}
	kubeletCert, err := c.CA.Issue(pki.Loopback("dev-kubelet"))
	if err != nil {
		return nil, err
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: NodeName, Labels: map[string]string{"kubernetes.io/hostname": NodeName}},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	c.Kubelet, err = kubelet.Start(kubelet.Options{
		TLS:                   serverTLS(kubeletCert, c.CA),
		StreamCreationTimeout: o.StreamCreationTimeout,
		StreamIdleTimeout:     o.StreamIdleTimeout,
		ForwardLinger:         o.ForwardLinger,
	})
	if err != nil {
		return nil, err
	}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(c.Kubelet.Port())
	c.APIServer, err = apiserver.Start(apiserver.Options{
		TLS:        serverTLS(apiCert, nil),
		GitVersion: o.GitVersion,
		Objects:    []runtime.Object{node, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}},
	})
	if err != nil {
		_ = c.Kubelet.Close()
		return nil, err
	}
	if err := c.writeFiles(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) writeFiles() error {
	var err error
	f := &c.Files
	if f.CA, err = c.CA.WriteFile(c.dir, "ca"); err != nil {
		return err
	}
	serving, err := c.CA.Issue(pki.Loopback("pfgateway"))
	if err != nil {
		return err
	}
	if f.ServingCert, f.ServingKey, err = serving.WriteFiles(c.dir, "pfgateway-serving"); err != nil {
		return err
	}
	kc, err := c.CA.Issue(pki.IssueOptions{CommonName: "pfgateway", Organization: []string{"pfgateway:kubelet-clients"}, Usage: pki.Client})
	if err != nil {
		return err
	}
	if f.KubeletClientCert, f.KubeletClientKey, err = kc.WriteFiles(c.dir, "pfgateway-kubelet-client"); err != nil {
		return err
	}
	gw, err := c.CA.Issue(pki.IssueOptions{CommonName: "system:serviceaccount:pfgateway:pfgateway", Usage: pki.Client})
	if err != nil {
		return err
	}
	f.GatewayKubeconfig = filepath.Join(c.dir, "pfgateway-cluster.kubeconfig")
	return WriteKubeconfig(f.GatewayKubeconfig, c.APIServer.URL(), c.CA.CertPEM, gw)
}

// Pod describes a pod to add: each container port is served by a TCP
// server on loopback at the given address.
type Pod struct {
	Namespace, Name string
	Labels          map[string]string
	Ports           map[int32]string // container port → 127.0.0.1:N
	Phase           corev1.PodPhase  // default Running
	NodeName        *string          // default NodeName; point at "" for an unscheduled pod
}

// AddPod creates the pod in the API server and tells the kubelet about it.
func (c *Cluster) AddPod(p Pod) error {
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	if p.Phase == "" {
		p.Phase = corev1.PodRunning
	}
	node := NodeName
	if p.NodeName != nil {
		node = *p.NodeName
	}
	uid := fmt.Sprintf("uid-%s-%s", p.Namespace, p.Name)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: typesUID(uid), Labels: p.Labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "pfgateway/dev"}}},
		Status:     corev1.PodStatus{Phase: p.Phase, PodIP: "127.0.0.1"},
	}
	for port := range p.Ports {
		pod.Spec.Containers[0].Ports = append(pod.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "p" + strconv.Itoa(int(port)), ContainerPort: port, Protocol: corev1.ProtocolTCP})
	}
	if err := c.APIServer.Tracker().Add(pod); err != nil {
		return err
	}
	c.Kubelet.SetPod(kubelet.Pod{Namespace: p.Namespace, Name: p.Name, UID: uid, Ports: p.Ports})
	return nil
}

// Add creates any other object (service, deployment …) in the API server.
func (c *Cluster) Add(obj runtime.Object) error { return c.APIServer.Tracker().Add(obj) }

// SetKubeletPort makes the node publish port as its kubelet port, so the
// gateway resolves its pods to whatever listens there (a fault proxy).
func (c *Cluster) SetKubeletPort(port int32) error {
	gvr := corev1.SchemeGroupVersion.WithResource("nodes")
	obj, err := c.APIServer.Tracker().Get(gvr, "", NodeName)
	if err != nil {
		return err
	}
	n := obj.(*corev1.Node).DeepCopy()
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = port
	return c.APIServer.Tracker().Update(gvr, n, "")
}

// Close stops the API server and the kubelet.
func (c *Cluster) Close() {
	if c.APIServer != nil {
		_ = c.APIServer.Close()
	}
	if c.Kubelet != nil {
		_ = c.Kubelet.Close()
	}
}

// ensure the client-go scheme knows every kind the dev cluster serves.
var _ = scheme.Scheme
