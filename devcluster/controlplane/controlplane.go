// Package controlplane holds what the control-plane test tier
// (test/controlplane) and the benchmark (bench) share to run the REAL etcd
// and kube-apiserver on loopback: where the binaries are, the flags they run
// with, and the Node and Pod objects through which the kube-apiserver
// reaches the test kubelet (devcluster/kubelet). Each caller runs the
// processes its own way (the tests log to files they dump on failure, the
// benchmark measures the kube-apiserver's CPU and RSS from /proc).
package controlplane

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// KubeAPIServerVersion is the release hack/kube-apiserver.sh builds by
// default; keep the two in step.
const KubeAPIServerVersion = "v1.37.2"

// Binaries are the executables a control plane runs.
type Binaries struct{ Etcd, KubeAPIServer string }

// FindBinaries looks for etcd on PATH (Debian's etcd-server package) and the
// kube-apiserver in $PFGATEWAY_KUBE_APISERVER or hack/kube-apiserver.sh's
// cache ($PFGATEWAY_CACHE, default ~/.cache/pfgateway).
func FindBinaries() (Binaries, error) {
	var b Binaries
	var err error
	if b.Etcd, err = exec.LookPath("etcd"); err != nil {
		return b, fmt.Errorf("etcd not found on PATH (apt-get install etcd-server): %w", err)
	}
	if p := os.Getenv("PFGATEWAY_KUBE_APISERVER"); p != "" {
		b.KubeAPIServer = p
	} else {
		cache := os.Getenv("PFGATEWAY_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return b, err
			}
			cache = filepath.Join(home, ".cache", "pfgateway")
		}
		b.KubeAPIServer = filepath.Join(cache, "kube-apiserver-"+KubeAPIServerVersion)
	}
	if fi, err := os.Stat(b.KubeAPIServer); err != nil || fi.Mode()&0o111 == 0 {
		return b, fmt.Errorf("kube-apiserver not found at %s (run hack/kube-apiserver.sh to build it): %v", b.KubeAPIServer, err)
	}
	return b, nil
}

// EtcdArgs are the flags of a single-member etcd with its data in dataDir,
// serving clients on clientURL (http://127.0.0.1:PORT).
func EtcdArgs(dataDir, clientURL, peerURL string) []string {
	return []string{
		"--name=cp", "--data-dir=" + dataDir,
		"--listen-client-urls=" + clientURL, "--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=cp=" + peerURL, "--initial-cluster-state=new",
		"--logger=zap", "--log-level=warn",
	}
}

// APIServerFlags are the files and ports a kube-apiserver runs with.
type APIServerFlags struct {
	EtcdURL string
	Port    int
	// CertDir is where it may write self-signed certificates (unused when
	// CertFile is set, but it wants a writable directory).
	CertDir           string
	CertFile, KeyFile string // serving certificate for 127.0.0.1
	ClientCAFile      string // client certificates it authenticates
	SAKeyFile         string // see WriteSAKey
	// Its client certificate for kubelets and the CA that signs kubelets'
	// serving certificates. Without them it cannot reach a kubelet that
	// wants client certificates (port-forward, exec, logs).
	KubeletClientCert, KubeletClientKey, KubeletCA string
}

// APIServerArgs are the kube-apiserver's flags for f: RBAC, no anonymous
// requests, and nothing that needs a controller-manager.
func APIServerArgs(f APIServerFlags) []string {
	args := []string{
		"--etcd-servers=" + f.EtcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(f.Port),
		"--cert-dir=" + f.CertDir,
		"--tls-cert-file=" + f.CertFile, "--tls-private-key-file=" + f.KeyFile,
		"--client-ca-file=" + f.ClientCAFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + f.SAKeyFile,
		"--service-account-signing-key-file=" + f.SAKeyFile,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--authorization-mode=Node,RBAC",
		"--anonymous-auth=false",
		// No controller-manager runs: no Endpoints reconciling on
		// loopback, and no flow control to keep the process small.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	}
	if f.KubeletClientCert != "" {
		args = append(args,
			"--kubelet-client-certificate="+f.KubeletClientCert, "--kubelet-client-key="+f.KubeletClientKey,
			"--kubelet-certificate-authority="+f.KubeletCA,
			// Nodes here report an InternalIP only (127.0.0.1); the
			// default order starts with Hostname, which would not resolve.
			"--kubelet-preferred-address-types=InternalIP")
	}
	return args
}

// WriteSAKey writes a new service-account signing key to path. It signs the
// tokens that TokenRequest issues and TokenReview verifies; RSA is what
// every release accepts.
func WriteSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return os.WriteFile(path, keyPEM, 0o600)
}
