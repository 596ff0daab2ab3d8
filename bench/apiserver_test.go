package main

import (
	"os"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/controlplane"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// TestKubeAPIServerPath runs path (b) for real: etcd and the kube-apiserver
// in front of the dev cluster's kubelet, client-go over SPDY and over the
// WebSocket tunnel through it, bytes verified both ways, the kubelet
// reached by the kube-apiserver (its client certificate, not the user's),
// and the kube-apiserver's CPU read from /proc.
func TestKubeAPIServerPath(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and a kube-apiserver")
	}
	if _, err := controlplane.FindBinaries(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err) // CI provides both (.ci/run), as for test/controlplane
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	cl, err := devcluster.Start(devcluster.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	pod, err := startPodServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pod.Close)
	echo, err := startEchoServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(echo.Close)
	if err := cl.AddPod(devcluster.Pod{Name: podName, Ports: map[int32]string{podPort: pod.Addr(), echoPort: echo.Addr()}}); err != nil {
		t.Fatal(err)
	}
	user, err := cl.CA.Issue(pki.IssueOptions{CommonName: benchUser, Organization: []string{benchGroup}, Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	k, err := startKubeAPIServer(dir, false, cl, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.proc.Stop(); k.etcd.Stop() })
	cfg := &rest.Config{Host: "https://" + k.proc.Addr, TLSClientConfig: rest.TLSClientConfig{CAData: cl.CA.CertPEM, CertData: user.CertPEM, KeyData: user.KeyPEM}}
	target := gatewayURL(k.proc.Addr, podName)

	for _, mode := range []string{modeSPDY, modeWebSocket} {
		t.Run(mode, func(t *testing.T) {
			before := kubeletForwards(cl)
			s, err := openForward(target, cfg, mode, podPort)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, dir := range []string{dirDownload, dirUpload} {
				if _, err := transfer(s.Local, dir, 4<<20, true); err != nil {
					t.Fatalf("%s: %v", dir, err)
				}
			}
			got, err := measure(k.proc, s.Local, dirDownload, 8<<20, "")
			if err != nil {
				t.Fatal(err)
			}
			if !(got.GatewayCPU >= 0) || got.MiBps <= 0 {
				t.Errorf("kube-apiserver sample %+v: want its CPU from /proc and a throughput", got)
			}
			after := kubeletForwards(cl)
			if len(after) != len(before)+1 {
				t.Fatalf("kubelet saw %d new port-forward requests, want 1 (from the kube-apiserver)", len(after)-len(before))
			}
			if cn := after[len(after)-1]; cn == benchUser {
				t.Errorf("the kubelet was reached with the user's certificate (CN %q), not the kube-apiserver's", cn)
			}
		})
	}
}

// kubeletForwards lists the client CN of every port-forward request the
// kubelet has served for the benchmark pod.
func kubeletForwards(cl *devcluster.Cluster) []string {
	var out []string
	for _, r := range cl.Kubelet.Requests() {
		if strings.HasPrefix(r.URL, "/portForward/default/"+podName) {
			out = append(out, r.ClientCN)
		}
	}
	return out
}
