package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pfgateway/pfgateway/certreload"
	"github.com/pfgateway/pfgateway/cmd/pfgateway/app/options"
	"github.com/pfgateway/pfgateway/resolve"
	"github.com/pfgateway/pfgateway/upgrade"
)

// completedConfig is what Run needs, built only from validated options.
type completedConfig struct {
	opts        *options.Options
	addr        string
	servingTLS  *tls.Config
	servingCert *certreload.Reloader
	clusterREST *rest.Config
	resolver    resolve.Resolver // template: Client and Nodes are set at start
	backend     upgrade.BackendOptions
}

// Complete validates o and loads what it points at.
func Complete(o *options.Options) (*completedConfig, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c := &completedConfig{opts: o, addr: net.JoinHostPort(o.Serving.BindAddress.String(), strconv.Itoa(o.Serving.SecurePort))}

	var err error
	c.servingCert, err = certreload.New(o.Serving.TLSCertFile, o.Serving.TLSPrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert-file/--tls-private-key-file: %w", err)
	}
	c.servingTLS = &tls.Config{
		// Reloaded when the files change (certificate rotation).
		GetCertificate: c.servingCert.GetCertificate,
		MinVersion:     tls.VersionTLS12,
		// HTTP/1.1 only: an HTTP/2 connection cannot be hijacked for an upgrade.
		NextProtos: []string{"http/1.1"},
		// Requested, not required: the authenticator verifies it, so a caller
		// without one gets a 401 Status instead of a failed handshake.
		ClientAuth: tls.RequestClientCert,
	}

	switch {
	case o.Clusters.ConfigFile != "":
		// Each cluster's access is in the clusters file (package clusters).
	case o.Cluster.Kubeconfig == "":
		c.clusterREST, err = rest.InClusterConfig()
	default:
		c.clusterREST, err = clientcmd.BuildConfigFromFlags("", o.Cluster.Kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	if c.clusterREST != nil {
		c.clusterREST.QPS, c.clusterREST.Burst = o.Cluster.QPS, o.Cluster.Burst
		c.clusterREST.UserAgent = "pfgateway"
	}

	types, _ := resolve.ParseAddressTypes(o.Kubelet.PreferredAddressTypes) // validated
	c.resolver = resolve.Resolver{AddressTypes: types, DefaultPort: int32(o.Kubelet.DefaultPort), RequireRunning: true}

	ktls := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.Kubelet.ClientCertificate != "" { // optional only with --clusters-config (validated)
		kcert, err := tls.LoadX509KeyPair(o.Kubelet.ClientCertificate, o.Kubelet.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("--kubelet-client-certificate/--kubelet-client-key: %w", err)
		}
		ktls.Certificates = []tls.Certificate{kcert}
	}
	switch {
	case o.Kubelet.CertificateAuthority != "":
		pem, err := os.ReadFile(o.Kubelet.CertificateAuthority)
		if err != nil {
			return nil, fmt.Errorf("--kubelet-certificate-authority: %w", err)
		}
		ktls.RootCAs = x509.NewCertPool()
		if !ktls.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--kubelet-certificate-authority: no certificates found in %s", o.Kubelet.CertificateAuthority)
		}
	case o.Kubelet.InsecureSkipTLSVerify:
		ktls.InsecureSkipVerify = true //nolint:gosec // explicit --kubelet-insecure-skip-tls-verify
	}
	c.backend = upgrade.BackendOptions{
		TLS: ktls, DialTimeout: o.Kubelet.DialTimeout, KeepAlive: o.Kubelet.KeepAlive,
		UpgradeTimeout: o.Kubelet.UpgradeTimeout, FollowRedirects: o.Kubelet.FollowRedirects, MaxRedirects: o.Kubelet.MaxRedirects,
	}
	return c, nil
}
