package apiserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kubectlDir holds the kubectl.1.NN binaries of the Cloud SDK image.
const kubectlDir = "/usr/lib/google-cloud-sdk/bin"

// TestKubectl runs real kubectl builds against the server. kubectl 1.30
// and later ask for aggregated discovery first and must fall back to the
// legacy documents this server returns.
func TestKubectl(t *testing.T) {
	if _, err := os.Stat(filepath.Join(kubectlDir, "kubectl.1.33")); err != nil {
		t.Skipf("kubectl not available (%v); install the Cloud SDK kubectl builds to run this test", err)
	}
	commands := []struct {
		args []string
		want string
	}{
		{[]string{"get", "pod", "demo", "-n", "default", "-o", "name"}, "pod/demo"},
		{[]string{"get", "deploy", "demo", "-o", "name"}, "deployment.apps/demo"},
		{[]string{"get", "pods", "-l", "app=demo", "-o", "name"}, "pod/demo"},
		{[]string{"get", "svc,no", "-o", "name"}, "service/demo\nnode/node-1"},
		{[]string{"get", "pods", "--field-selector", "spec.nodeName=node-2", "-o", "name"}, "pod/other"},
		{[]string{"get", "ns", "default", "-o", "jsonpath={.kind} {.metadata.name}"}, "Namespace default"},
	}
	for minor := 27; minor <= 33; minor++ {
		bin := filepath.Join(kubectlDir, fmt.Sprintf("kubectl.1.%d", minor))
		t.Run(fmt.Sprintf("1.%d", minor), func(t *testing.T) {
			if _, err := os.Stat(bin); err != nil {
				t.Skipf("%s not available: %v", bin, err)
			}
			f := start(t, fmt.Sprintf("v1.%d.0", minor))
			kubeconfig := f.writeKubeconfig(t)
			cacheDir := t.TempDir()
			for _, c := range commands {
				args := append([]string{"--kubeconfig", kubeconfig, "--cache-dir", cacheDir}, c.args...)
				out := run(t, bin, args...)
				if out != c.want {
					t.Errorf("kubectl %s = %q, want %q", strings.Join(c.args, " "), out, c.want)
				}
			}
			// The client's credentials reach the server unchanged.
			for _, r := range f.srv.Requests() {
				if got := r.Header.Get("Authorization"); got != "Bearer demo-token" {
					t.Errorf("%s %s: Authorization %q", r.Method, r.Path, got)
				}
			}
		})
	}
}

// writeKubeconfig writes a kubeconfig for the server with a bearer token.
func (f *fixture) writeKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: demo
  user:
    token: demo-token
contexts:
- name: fake
  context:
    cluster: fake
    user: demo
    namespace: default
current-context: fake
`, f.srv.URL(), base64.StdEncoding.EncodeToString(f.caPEM))
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("%s %s stderr:\n%s", filepath.Base(bin), strings.Join(args, " "), stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}
