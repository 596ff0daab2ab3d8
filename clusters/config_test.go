package clusters

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    *Config // Hash is not compared
		wantErr []string
	}{
		{name: "should accept both backends, default kubelet, relative kubeconfig from the file's dir",
			in: "clusters:\n- name: a\n  kubeconfig: a.kubeconfig\n- name: b\n  kubeconfig: /etc/b.kubeconfig\n  context: ctx\n  backend: apiserver\n- name: c\n  inCluster: true\n  backend: kubelet\n",
			want: &Config{AuthenticationCluster: "a", Clusters: []Cluster{
				{Name: "a", Kubeconfig: "/cfg/a.kubeconfig", Backend: BackendKubelet},
				{Name: "b", Kubeconfig: "/etc/b.kubeconfig", Context: "ctx", Backend: BackendAPIServer},
				{Name: "c", InCluster: true, Backend: BackendKubelet},
			}}},
		{name: "should take the named authentication cluster",
			in:   "authenticationCluster: b\nclusters:\n- {name: a, inCluster: true}\n- {name: b, inCluster: true, backend: apiserver}\n",
			want: &Config{AuthenticationCluster: "b", Clusters: []Cluster{{Name: "a", InCluster: true, Backend: BackendKubelet}, {Name: "b", InCluster: true, Backend: BackendAPIServer}}}},
		{name: "should take a cluster's own kubelet files, relative to the file's dir",
			in: "clusters:\n- {name: a, inCluster: true, kubeletClientCertificate: k.crt, kubeletClientKey: /k.key, kubeletCertificateAuthority: ca.crt}\n",
			want: &Config{AuthenticationCluster: "a", Clusters: []Cluster{{Name: "a", InCluster: true, Backend: BackendKubelet,
				KubeletClientCertificate: "/cfg/k.crt", KubeletClientKey: "/k.key", KubeletCertificateAuthority: "/cfg/ca.crt"}}}},
		{name: "should want the kubelet key with the certificate", in: "clusters:\n- {name: a, inCluster: true, kubeletClientCertificate: k.crt}\n",
			wantErr: []string{"clusters[0].kubeletClientKey: Required value: kubeletClientCertificate and kubeletClientKey go together"}},
		{name: "should refuse kubelet files for an apiserver cluster", in: "clusters:\n- {name: a, inCluster: true, backend: apiserver, kubeletCertificateAuthority: ca.crt}\n",
			wantErr: []string{"clusters[0].backend: Forbidden: kubelet certificates are for backend kubelet"}},
		{name: "should refuse an unknown field", in: "clusters:\n- name: a\n  kubeConfig: x\n",
			wantErr: []string{`unknown field "clusters[0].kubeConfig"`}},
		{name: "should refuse a duplicated field", in: "clusters:\n- name: a\n  name: b\n  inCluster: true\n",
			wantErr: []string{`"name" already set`}},
		{name: "should refuse no clusters", in: "clusters: []\n", wantErr: []string{"clusters: Required value: at least one cluster is required"}},
		{name: "should refuse an empty file", in: "", wantErr: []string{"clusters: Required value"}},
		{name: "should refuse duplicate names", in: "clusters:\n- {name: a, inCluster: true}\n- {name: a, inCluster: true}\n",
			wantErr: []string{`clusters[1].name: Duplicate value: "a"`}},
		{name: "should refuse a name that is not a DNS label", in: "clusters:\n- {name: a.b, inCluster: true}\n- {name: A, inCluster: true}\n- {name: '', inCluster: true}\n",
			wantErr: []string{`clusters[0].name: Invalid value: "a.b"`, `clusters[1].name: Invalid value: "A"`, `clusters[2].name: Invalid value: ""`}},
		{name: "should want kubeconfig or inCluster", in: "clusters:\n- {name: a}\n",
			wantErr: []string{"clusters[0].kubeconfig: Required value: one of kubeconfig or inCluster: true is required"}},
		{name: "should refuse kubeconfig with inCluster", in: "clusters:\n- {name: a, kubeconfig: k, inCluster: true}\n",
			wantErr: []string{"clusters[0].inCluster: Invalid value: true: kubeconfig and inCluster are mutually exclusive"}},
		{name: "should refuse a context without kubeconfig", in: "clusters:\n- {name: a, inCluster: true, context: c}\n",
			wantErr: []string{`clusters[0].context: Invalid value: "c": context needs a kubeconfig`}},
		{name: "should refuse an unknown backend", in: "clusters:\n- {name: a, inCluster: true, backend: node}\n",
			wantErr: []string{`clusters[0].backend: Unsupported value: "node": supported values: "kubelet", "apiserver"`}},
		{name: "should refuse an unknown authentication cluster", in: "authenticationCluster: z\nclusters:\n- {name: a, inCluster: true}\n",
			wantErr: []string{`authenticationCluster: Not found: "z"`}},
		{name: "should refuse a wrong type", in: "clusters:\n- {name: a, inCluster: yes please}\n", wantErr: []string{"decoding the clusters file"}},
		{name: "should refuse a file too large", in: "clusters: []\n#" + strings.Repeat("x", MaxFileSize), wantErr: []string{"larger than the 1048576 allowed"}},
		{name: "should report every problem", in: "clusters:\n- {name: a}\n- {name: a, inCluster: true, backend: x}\n",
			wantErr: []string{"clusters[0].kubeconfig: Required", `clusters[1].name: Duplicate`, "clusters[1].backend: Unsupported"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in), "/cfg")
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Hash) != 64 {
				t.Errorf("hash %q", got.Hash)
			}
			got.Hash = ""
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestConfigNames(t *testing.T) {
	c, err := Parse([]byte("clusters:\n- {name: b, inCluster: true}\n- {name: a, inCluster: true}\n"), "/")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Names(); !reflect.DeepEqual(got, []string{"b", "a"}) {
		t.Errorf("names %v, want file order [b a]", got)
	}
	if cl, ok := c.Get("a"); !ok || cl.Name != "a" {
		t.Errorf("Get(a) = %+v, %v", cl, ok)
	}
	if _, ok := c.Get("z"); ok {
		t.Error("Get(z) found a cluster")
	}
}
