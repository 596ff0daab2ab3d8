package devcluster

import (
	"crypto/tls"
	"crypto/x509"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// WriteKubeconfig writes a kubeconfig for server that trusts caPEM and
// authenticates with the client certificate kp.
func WriteKubeconfig(path, server string, caPEM []byte, kp *pki.KeyPair) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["pfgateway"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.CertPEM, ClientKeyData: kp.KeyPEM}
	cfg.Contexts["pfgateway"] = &clientcmdapi.Context{Cluster: "pfgateway", AuthInfo: "user", Namespace: "default"}
	cfg.CurrentContext = "pfgateway"
	return clientcmd.WriteToFile(*cfg, path)
}

// serverTLS is a serving config for kp; with clientCA set, client
// certificates signed by it are required.
func serverTLS(kp *pki.KeyPair, clientCA *pki.CA) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{kp.TLS}, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		c.ClientCAs = clientCA.Pool()
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c
}

// ClientTLS is a client config that trusts ca and presents kp.
func ClientTLS(ca *pki.CA, kp *pki.KeyPair) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if kp != nil {
		c.Certificates = []tls.Certificate{kp.TLS}
	}
	return c
}

func typesUID(s string) types.UID { return types.UID(s) }
