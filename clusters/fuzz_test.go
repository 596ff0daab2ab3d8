package clusters

import (
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzParse feeds arbitrary bytes to the parser: it must never panic, and
// whatever it accepts must be servable: 1–MaxClusters clusters with unique
// DNS-label names, exactly one kind of API access, a known backend and an
// authentication cluster among them.
func FuzzParse(f *testing.F) {
	f.Add([]byte("clusters:\n- name: a\n  kubeconfig: a.kubeconfig\n- name: b\n  inCluster: true\n  backend: apiserver\n"))
	f.Add([]byte("authenticationCluster: b\nclusters:\n- {name: a, kubeconfig: /k, context: c}\n- {name: b, inCluster: true}\n"))
	f.Add([]byte(`{"clusters":[{"name":"x","inCluster":true,"backend":"kubelet"}]}`))
	f.Add([]byte("clusters: []\n"))
	f.Add([]byte("clusters:\n- {name: k, inCluster: true, kubeletClientCertificate: c, kubeletClientKey: k, kubeletCertificateAuthority: ca}\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "/cfg")
		if err != nil {
			if c != nil {
				t.Fatal("Parse returned a config with an error")
			}
			return
		}
		if len(c.Clusters) == 0 || len(c.Clusters) > MaxClusters {
			t.Fatalf("accepted %d clusters", len(c.Clusters))
		}
		seen := map[string]bool{}
		for _, cl := range c.Clusters {
			if len(validation.IsDNS1123Label(cl.Name)) > 0 || seen[cl.Name] {
				t.Fatalf("accepted name %q (seen %v)", cl.Name, seen[cl.Name])
			}
			seen[cl.Name] = true
			if (cl.Kubeconfig == "") == !cl.InCluster {
				t.Fatalf("cluster %q: kubeconfig %q, inCluster %v", cl.Name, cl.Kubeconfig, cl.InCluster)
			}
			if cl.Kubeconfig != "" && !filepath.IsAbs(cl.Kubeconfig) {
				t.Fatalf("cluster %q: relative kubeconfig %q", cl.Name, cl.Kubeconfig)
			}
			if (cl.KubeletClientCertificate == "") != (cl.KubeletClientKey == "") || (cl.ownKubeletTLS() && cl.Backend != BackendKubelet) {
				t.Fatalf("cluster %q: kubelet files %+v", cl.Name, cl)
			}
			for _, p := range []string{cl.KubeletClientCertificate, cl.KubeletClientKey, cl.KubeletCertificateAuthority} {
				if p != "" && !filepath.IsAbs(p) {
					t.Fatalf("cluster %q: relative path %q", cl.Name, p)
				}
			}
			if cl.Backend != BackendKubelet && cl.Backend != BackendAPIServer {
				t.Fatalf("cluster %q: backend %q", cl.Name, cl.Backend)
			}
		}
		if !seen[c.AuthenticationCluster] {
			t.Fatalf("authentication cluster %q is not served", c.AuthenticationCluster)
		}
	})
}
