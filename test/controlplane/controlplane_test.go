package controlplane

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/controlplane"
	"github.com/pfgateway/pfgateway/devcluster/hashpod"
	"github.com/pfgateway/pfgateway/devcluster/kubelet"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// controlPlane is etcd, a kube-apiserver, the test kubelet registered as a
// Node, and the objects the tests use (see objects_test.go).
type controlPlane struct {
	dir    string
	ca     *pki.CA // signs every certificate: serving, client, kubelet
	caFile string

	etcd, apiserver *process
	apiURL, etcdURL string
	admin           kubernetes.Interface // system:masters

	kubelet *kubelet.Kubelet
	hash    *hashpod.Server

	// The gateway's files: serving certificate, its client certificate
	// for kubelets and its kubeconfig (user "pfgateway") for the API server.
	servingCert, servingKey string
	kubeletCert, kubeletKey string
	gatewayKubeconfig       string
}

// startControlPlane brings everything up or returns an error with the
// failing process's log tail; on error nothing is left running.
func startControlPlane(b binaries) (_ *controlPlane, err error) {
	dir, err := os.MkdirTemp("", "pfgateway-controlplane-")
	if err != nil {
		return nil, err
	}
	c := &controlPlane{dir: dir}
	defer func() {
		if err != nil {
			c.dumpLogs(os.Stderr)
			_ = c.stop()
		}
	}()
	if err = c.writePKI(); err != nil {
		return nil, err
	}
	// A port taken between freePorts and the server's bind makes the
	// process exit at once; a new set of ports then usually works.
	for attempt := 1; ; attempt++ {
		if err = c.startEtcd(b.Etcd); err == nil {
			break
		}
		if attempt == 3 {
			return nil, err
		}
		_ = c.etcd.stop()
	}
	for attempt := 1; ; attempt++ {
		if err = c.startAPIServer(b.KubeAPIServer); err == nil {
			break
		}
		if attempt == 3 {
			return nil, err
		}
		_ = c.apiserver.stop()
	}
	if err = c.startKubelet(); err != nil {
		return nil, err
	}
	if c.hash, err = startHashServer(); err != nil {
		return nil, err
	}
	if err = c.createObjects(); err != nil {
		return nil, fmt.Errorf("creating the test objects: %w", err)
	}
	return c, nil
}

func (c *controlPlane) path(name string) string { return filepath.Join(c.dir, name) }

// writePKI writes the CA, the API server's serving certificate, its
// service-account signing key and the gateway's certificates.
func (c *controlPlane) writePKI() error {
	var err error
	if c.ca, err = pki.NewCA("pfgateway-controlplane-ca"); err != nil {
		return err
	}
	if c.caFile, err = c.ca.WriteFile(c.dir, "ca"); err != nil {
		return err
	}
	api, err := c.ca.Issue(pki.Loopback("kube-apiserver"))
	if err != nil {
		return err
	}
	if _, _, err = api.WriteFiles(c.dir, "apiserver"); err != nil {
		return err
	}
	if err = controlplane.WriteSAKey(c.path("sa.key")); err != nil {
		return err
	}
	serving, err := c.ca.Issue(pki.Loopback("pfgateway"))
	if err != nil {
		return err
	}
	if c.servingCert, c.servingKey, err = serving.WriteFiles(c.dir, "pfgateway-serving"); err != nil {
		return err
	}
	kc, err := c.ca.Issue(pki.IssueOptions{CommonName: "pfgateway-kubelet-client", Usage: pki.Client})
	if err != nil {
		return err
	}
	c.kubeletCert, c.kubeletKey, err = kc.WriteFiles(c.dir, "pfgateway-kubelet-client")
	return err
}

func (c *controlPlane) startEtcd(bin string) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	data := c.path("etcd")
	_ = os.RemoveAll(data)
	c.etcd, err = startProcess("etcd", c.path("etcd.log"), bin, controlplane.EtcdArgs(data, client, peer)...)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	if err := waitFor(c.etcd, 60*time.Second, "etcd", func() error { return getOK(hc, client+"/health") }); err != nil {
		return err
	}
	c.etcdURL = client
	return nil
}

func (c *controlPlane) startAPIServer(bin string) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	c.apiURL = "https://127.0.0.1:" + strconv.Itoa(ports[0])
	args := controlplane.APIServerArgs(controlplane.APIServerFlags{
		EtcdURL: c.etcdURL, Port: ports[0], CertDir: c.path("apiserver-certs"),
		CertFile: c.path("apiserver.crt"), KeyFile: c.path("apiserver.key"),
		ClientCAFile: c.caFile, SAKeyFile: c.path("sa.key"),
		// The kubelet wants a client certificate from the CA: the API
		// server's own port-forwards (the gateway's apiserver backend) need one.
		KubeletClientCert: c.kubeletCert, KubeletClientKey: c.kubeletKey, KubeletCA: c.caFile,
	})
	args = append(args, "--audit-policy-file="+c.path(auditPolicyFile), "--audit-log-path="+c.path(auditLogFile))
	if err := os.WriteFile(c.path(auditPolicyFile), []byte(auditPolicy), 0o600); err != nil {
		return err
	}
	if c.apiserver, err = startProcess("kube-apiserver", c.path("kube-apiserver.log"), bin, args...); err != nil {
		return err
	}
	admin, err := c.ca.Issue(pki.IssueOptions{CommonName: "cp-admin", Organization: []string{"system:masters"}, Usage: pki.Client})
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: devcluster.ClientTLS(c.ca, admin)}}
	defer hc.CloseIdleConnections()
	// /readyz includes the RBAC bootstrap hook: the default ClusterRoles
	// (system:discovery, …) exist once it answers 200.
	if err := waitFor(c.apiserver, 3*time.Minute, "kube-apiserver /readyz", func() error { return getOK(hc, c.apiURL+"/readyz") }); err != nil {
		return err
	}
	cfg := c.restConfig(c.apiURL, admin)
	c.admin, err = kubernetes.NewForConfig(cfg)
	return err
}

// restConfig is a client config for server that trusts the CA and
// authenticates with kp.
func (c *controlPlane) restConfig(server string, kp *pki.KeyPair) *rest.Config {
	return &rest.Config{
		Host:            server,
		TLSClientConfig: rest.TLSClientConfig{CertData: kp.CertPEM, KeyData: kp.KeyPEM, CAData: c.ca.CertPEM},
		QPS:             50, Burst: 100,
	}
}

// startKubelet starts the test kubelet behind TLS that requires client
// certificates signed by the CA, as devcluster does.
func (c *controlPlane) startKubelet() error {
	kp, err := c.ca.Issue(pki.Loopback("cp-kubelet"))
	if err != nil {
		return err
	}
	c.kubelet, err = kubelet.Start(kubelet.Options{TLS: &tls.Config{
		Certificates: []tls.Certificate{kp.TLS},
		ClientCAs:    c.ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}})
	return err
}

// stop stops everything in reverse order and removes the temp dir.
func (c *controlPlane) stop() error {
	var errs []error
	if c.kubelet != nil {
		errs = append(errs, c.kubelet.Close())
	}
	if c.hash != nil {
		c.hash.Close()
	}
	errs = append(errs, c.apiserver.stop(), c.etcd.stop())
	errs = append(errs, os.RemoveAll(c.dir))
	return errors.Join(errs...)
}

func (c *controlPlane) dumpLogs(w io.Writer) {
	for _, p := range []*process{c.etcd, c.apiserver} {
		if p != nil {
			p.dumpLog(w, 40)
		}
	}
}

// getOK GETs url and wants 200.
func getOK(hc *http.Client, url string) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return nil
}
