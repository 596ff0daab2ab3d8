package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/bench/internal/gwproc"
	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/controlplane"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// pathAPIServer is path (b): the real kube-apiserver in front of the test
// kubelet, as kubectl port-forward uses it without a gateway.
const pathAPIServer = "apiserver"

const (
	kasNode     = "bench-node"
	kasReadyFor = 3 * time.Minute // the first start on a loaded machine is slow
)

// kubeAPIServer is the kube-apiserver child (measured like a gateway) and
// the etcd it needs (not measured: it is idle during transfers).
type kubeAPIServer struct {
	proc *gatewayProc
	etcd *gwproc.Proc
}

// startKubeAPIServer brings up etcd and the kube-apiserver found by
// controlplane.FindBinaries, pointed at the dev cluster's kubelet with the
// dev cluster's CA and kubelet client certificate, and creates the
// benchmark's Node and pod (and, with rttProxy set, the node behind the
// delay proxy and its pod). The benchmark's user (group "bench") gets what
// kubectl port-forward needs through RBAC. A missing binary is returned as
// errMissing so the caller can skip the path.
func startKubeAPIServer(dir string, pin bool, cl *devcluster.Cluster, rttProxyPort int) (*kubeAPIServer, error) {
	bins, err := controlplane.FindBinaries()
	if err != nil {
		return nil, missingError{err}
	}
	k := &kubeAPIServer{}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = gwproc.FreePort(); err != nil {
			return nil, err
		}
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	hc := &http.Client{Timeout: 2 * time.Second}
	k.etcd, err = gwproc.StartCommand("etcd", bins.Etcd, dir, 0,
		controlplane.EtcdArgs(filepath.Join(dir, "etcd"), etcdURL, "http://127.0.0.1:"+strconv.Itoa(ports[1])), nil,
		func(exited <-chan struct{}) error { return pollOK(hc, etcdURL+"/health", exited, time.Minute) })
	if err != nil {
		return nil, err
	}
	atCleanup(func() { k.etcd.Stop() })

	serving, err := cl.CA.Issue(pki.Loopback("kube-apiserver"))
	if err != nil {
		return nil, err
	}
	cert, key, err := serving.WriteFiles(dir, "kube-apiserver")
	if err != nil {
		return nil, err
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := controlplane.WriteSAKey(saKey); err != nil {
		return nil, err
	}
	admin, err := cl.CA.Issue(pki.IssueOptions{CommonName: "bench-admin", Organization: []string{"system:masters"}, Usage: pki.Client})
	if err != nil {
		return nil, err
	}
	f := cl.Files
	args := controlplane.APIServerArgs(controlplane.APIServerFlags{
		EtcdURL: etcdURL, Port: ports[2], CertDir: filepath.Join(dir, "kube-apiserver-certs"),
		CertFile: cert, KeyFile: key, ClientCAFile: f.CA, SAKeyFile: saKey,
		// The kube-apiserver reaches the kubelet as the gateway does.
		KubeletClientCert: f.KubeletClientCert, KubeletClientKey: f.KubeletClientKey, KubeletCA: f.CA,
	})
	url := "https://127.0.0.1:" + strconv.Itoa(ports[2])
	adminHC := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: devcluster.ClientTLS(cl.CA, admin)}}
	defer adminHC.CloseIdleConnections()
	p, err := gwproc.StartCommand("kube-apiserver", bins.KubeAPIServer, dir, ports[2], args, pinChild(pin),
		func(exited <-chan struct{}) error { return pollOK(adminHC, url+"/readyz", exited, kasReadyFor) })
	if err != nil {
		return nil, err
	}
	k.proc = &gatewayProc{Proc: p}
	atCleanup(func() { k.proc.Stop() })
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: url, TLSClientConfig: rest.TLSClientConfig{CAData: cl.CA.CertPEM, CertData: admin.CertPEM, KeyData: admin.KeyPEM}})
	if err != nil {
		return nil, err
	}
	return k, createKASObjects(cs, cl, rttProxyPort)
}

// createKASObjects registers the kubelet (and the delay proxy) as Nodes,
// creates the pods the dev cluster's kubelet serves, and lets group "bench"
// port-forward, waiting until the RBAC authorizer agrees.
func createKASObjects(cs kubernetes.Interface, cl *devcluster.Cluster, rttProxyPort int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	core := cs.CoreV1()
	if err := controlplane.CreateServiceAccounts(ctx, core, "default", "default"); err != nil {
		return err
	}
	nodes := []struct {
		node, pod string
		port      int
	}{{kasNode, podName, cl.Kubelet.Port()}}
	if rttProxyPort != 0 {
		nodes = append(nodes, struct {
			node, pod string
			port      int
		}{rttNode, rttPod, rttProxyPort})
	}
	for _, n := range nodes {
		if err := controlplane.RegisterNode(ctx, core, n.node, n.port); err != nil {
			return err
		}
		// The kubelet already serves the pod (devcluster's AddPod); the
		// kube-apiserver needs the object to find its node.
		if _, err := controlplane.CreateRunningPod(ctx, core, "default", n.pod, n.node, podPort, echoPort); err != nil {
			return err
		}
	}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-port-forward"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"get", "create"}},
		},
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-port-forward"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: benchGroup}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return err
	}
	// The authorizer reads RBAC objects through informers.
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: benchUser, Groups: []string{benchGroup, "system:authenticated"},
		ResourceAttributes: &authzv1.ResourceAttributes{Namespace: "default", Verb: "create", Resource: "pods", Subresource: "portforward", Name: podName},
	}}
	for {
		res, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if res.Status.Allowed {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("RBAC never allowed %s to port-forward: %w", benchUser, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pollOK GETs url every 200 ms until it answers 200, the child exits or d
// passes.
func pollOK(hc *http.Client, url string, exited <-chan struct{}, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", d, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it was ready (last: %v)", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// missingError is a kube-apiserver or etcd binary that is not there: the
// path is skipped, with the reason in the report.
type missingError struct{ error }

// The benchmark's client identity: the gateways and the kube-apiserver
// authenticate its certificate (signed by the dev cluster's CA).
const (
	benchUser  = "bench-user"
	benchGroup = "bench"
)

// addAPIServer starts the kube-apiserver and adds it as a path (to
// r.Gateways too, so it is measured and reported like a gateway child). A
// missing binary skips the path with a note in r.Skipped.
func (e *env) addAPIServer(c *config, r *results, dir string, cl *devcluster.Cluster, user *pki.KeyPair, cfg func(host string) *rest.Config) error {
	rttPort := 0
	if e.rtt != nil {
		rttPort = e.rttProxyPort
	}
	logf("starting etcd and kube-apiserver %s", controlplane.KubeAPIServerVersion)
	k, err := startKubeAPIServer(dir, c.pin, cl, rttPort)
	if m, ok := err.(missingError); ok {
		r.Skipped = append(r.Skipped, fmt.Sprintf("path %s skipped: %v", pathAPIServer, m.error))
		logf("%s", r.Skipped[len(r.Skipped)-1])
		return nil
	}
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	info := gatewayInfo{Name: pathAPIServer, TLS: probeTLS(k.proc.Addr, cl, user)}
	if info.RSSIdle, _, err = k.proc.Memory(); err != nil {
		return err
	}
	logf("kube-apiserver %s: pid %d ready at %s, VmRSS %s", controlplane.KubeAPIServerVersion, k.proc.Pid(), k.proc.Addr, bytesString(info.RSSIdle))
	r.Gateways = append(r.Gateways, info)
	e.targets[pathAPIServer] = target{gatewayURL(k.proc.Addr, podName), cfg(k.proc.Addr), k.proc}
	if e.rtt != nil {
		e.rtt[pathAPIServer] = target{gatewayURL(k.proc.Addr, rttPod), cfg(k.proc.Addr), k.proc}
	}
	e.paths = append(e.paths, pathAPIServer)
	return nil
}
