package controlplane

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/pki"
	"github.com/pfgateway/pfgateway/test/chart/helmbin"
)

// The chart is rendered as this release into this namespace.
const (
	chartNamespace = "pfgateway-chart"
	chartRelease   = "pfgw"
	// chartSA is the ServiceAccount the chart creates ("<release>-pfgateway").
	chartSA     = chartRelease + "-pfgateway"
	chartSAUser = "system:serviceaccount:" + chartNamespace + ":" + chartSA
	// chartKubeletUser is the chart's default kubelet.clientCertificate.user,
	// which is also the CN of the harness's kubelet client certificate.
	chartKubeletUser = "pfgateway-kubelet-client"
)

// chartHelm returns the pinned helm, or skips (fails with CI=true, where
// .ci/run builds it with hack/helm.sh).
func chartHelm(t *testing.T) string {
	t.Helper()
	dir, err := helmbin.Dir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("helm not available (.ci/run runs hack/helm.sh): %v", err)
		}
		t.Skipf("helm not available, run hack/helm.sh: %v", err)
	}
	return filepath.Join(dir, "helm")
}

var chartSetup struct {
	once       sync.Once
	kubeconfig string // system:masters, for kubectl
	err        error
}

// chartAdmin creates, once, the chart's namespace (with the default
// ServiceAccount the helm test pod runs as; no controller-manager makes
// it), the stand-in CRDs, and a system:masters kubeconfig for kubectl.
func (c *controlPlane) chartAdmin(t *testing.T, kubectlBin string) string {
	t.Helper()
	chartSetup.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		admin, err := c.ca.Issue(pki.IssueOptions{CommonName: "chart-admin", Organization: []string{"system:masters"}, Usage: pki.Client})
		if err != nil {
			chartSetup.err = err
			return
		}
		chartSetup.kubeconfig = c.path("chart-admin.kubeconfig")
		if chartSetup.err = devcluster.WriteKubeconfig(chartSetup.kubeconfig, c.apiURL, c.ca.CertPEM, admin); chartSetup.err != nil {
			return
		}
		// Pod Security "restricted", enforced (the helm test Pod) and
		// warned about (the Deployment's pod template).
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: chartNamespace, Labels: map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted",
			"pod-security.kubernetes.io/warn":    "restricted",
		}}}
		if _, err := c.admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			chartSetup.err = err
			return
		}
		if _, err := c.admin.CoreV1().ServiceAccounts(chartNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			chartSetup.err = err
			return
		}
		crds, err := os.ReadFile("testdata/chart-crds.yaml")
		if err != nil {
			chartSetup.err = err
			return
		}
		if _, err := kubectlAdmin(kubectlBin, chartSetup.kubeconfig, crds, "apply", "-f", "-"); err != nil {
			chartSetup.err = err
			return
		}
		_, chartSetup.err = kubectlAdmin(kubectlBin, chartSetup.kubeconfig, nil, "wait", "--for=condition=Established", "--timeout=60s",
			"crd/servicemonitors.monitoring.coreos.com", "crd/certificates.cert-manager.io")
	})
	if chartSetup.err != nil {
		t.Fatalf("chart test setup: %v", chartSetup.err)
	}
	return chartSetup.kubeconfig
}

// kubectlAdmin runs kubectl with stdin and returns stdout, or an error
// carrying stderr.
func kubectlAdmin(bin, kubeconfig string, stdin []byte, args ...string) (string, error) {
	out, _, err := kubectlAdmin2(bin, kubeconfig, stdin, args...)
	return out, err
}

// kubectlAdmin2 is kubectlAdmin that also returns stderr (the API server's
// warnings).
func kubectlAdmin2(bin, kubeconfig string, stdin []byte, args ...string) (stdout, stderr string, _ error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "pfgateway-kubectl-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kubeconfig, "--cache-dir", dir + "/cache"}, args...)...)
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), errb.String(), &kubectlError{args: args, err: err, stderr: errb.String()}
	}
	return out.String(), errb.String(), nil
}

type kubectlError struct {
	args   []string
	err    error
	stderr string
}

func (e *kubectlError) Error() string {
	return "kubectl " + strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + e.stderr
}

// chartValueFiles are "" (the defaults) and every ci/*-values.yaml.
func chartValueFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(helmbin.ChartDir(), "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci values files: %v", err)
	}
	return append([]string{""}, files...)
}

// TestChartServerDryRun applies every manifest the chart renders, with the
// defaults and with each ci values file, with `kubectl apply
// --dry-run=server`: the real API server decodes, defaults, validates
// (strict field validation: an unknown field is an error) and admits each
// object without storing it, in a namespace that enforces the "restricted"
// Pod Security Standard.
func TestChartServerDryRun(t *testing.T) {
	c := needControlPlane(t)
	helm := chartHelm(t)
	kbin := kubectlBinary(t, 33)
	kc := c.chartAdmin(t, kbin)
	for _, f := range chartValueFiles(t) {
		name := "defaults"
		var args []string
		if f != "" {
			name, args = filepath.Base(f), []string{"--values", f}
		}
		t.Run(name, func(t *testing.T) {
			out, err := helmbin.Template(helm, chartRelease, chartNamespace, args...)
			if err != nil {
				t.Fatal(err)
			}
			docs := helmbin.SplitManifests(out)
			res, warnings, err := kubectlAdmin2(kbin, kc, out, "apply", "--dry-run=server", "--validate=strict", "-f", "-")
			if err != nil {
				t.Fatal(err)
			}
			// No warning at all: none from Pod Security "restricted", none
			// for a deprecated API or an unknown field.
			if strings.TrimSpace(warnings) != "" {
				t.Errorf("kubectl apply warned:\n%s", warnings)
			}
			// One "<kind>/<name> created (server dry run)" line per object.
			lines := strings.Split(strings.TrimSpace(res), "\n")
			if len(lines) != len(docs) {
				t.Fatalf("%d objects rendered, kubectl reported %d:\n%s", len(docs), len(lines), res)
			}
			for _, l := range lines {
				if !strings.HasSuffix(l, " (server dry run)") {
					t.Errorf("kubectl: %q", l)
				}
			}
		})
	}
}

// chartObjects renders the chart with values args and returns the RBAC
// objects (ServiceAccount, ClusterRoles, ClusterRoleBindings) as one YAML
// stream, and the Deployment.
func chartObjects(t *testing.T, helm string, args ...string) (rbac []byte, deploy *appsv1.Deployment) {
	t.Helper()
	out, err := helmbin.Template(helm, chartRelease, chartNamespace, args...)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, d := range helmbin.SplitManifests(out) {
		switch d.Kind {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding":
			b.WriteString("---\n")
			b.Write(d.Raw)
			b.WriteString("\n")
		case "Deployment":
			deploy = &appsv1.Deployment{}
			if err := yaml.Unmarshal(d.Raw, deploy); err != nil {
				t.Fatal(err)
			}
		}
	}
	if deploy == nil || len(deploy.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("the chart rendered no Deployment with one container")
	}
	return b.Bytes(), deploy
}

// gatewayArgs turns the Deployment's container args into the in-process
// gateway's: the files mounted under /etc/pfgateway become the harness's
// files; every other flag is kept as the chart renders it.
func (c *controlPlane) gatewayArgs(t *testing.T, d *appsv1.Deployment) []string {
	t.Helper()
	files := map[string]string{
		"tls-cert-file":                 c.servingCert,
		"tls-private-key-file":          c.servingKey,
		"kubelet-client-certificate":    c.kubeletCert,
		"kubelet-client-key":            c.kubeletKey,
		"kubelet-certificate-authority": c.caFile,
		"client-ca-file":                c.caFile,
	}
	var args []string
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if p, ok := files[name]; ok {
			a = "--" + name + "=" + p
		} else if strings.HasPrefix(value, "/etc/pfgateway/") {
			t.Fatalf("chart arg %q names a mounted file this test does not map", a)
		}
		args = append(args, a)
	}
	// Loopback listeners and a short drain for the test; the gateway's
	// cluster credential is the chart ServiceAccount's token (in a pod it
	// would be the mounted in-cluster one).
	return append(args, "--bind-address=127.0.0.1", "--secure-port=0", "--metrics-bind-address=127.0.0.1:0", "--shutdown-grace-period=2s")
}

// chartSAR asks whether user may verb group/resource[/sub] (cluster-wide
// when ns is "").
func (c *controlPlane) chartSAR(ctx context.Context, user string, groups []string, ra authzv1.ResourceAttributes) (bool, error) {
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: &ra}}
	res, err := c.admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return res.Status.Allowed, nil
}

// waitSAR polls until the RBAC authorizer's answer for ra is want (it reads
// RBAC objects through informers).
func (c *controlPlane) waitSAR(t *testing.T, user string, groups []string, ra authzv1.ResourceAttributes, want bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		got, err := c.chartSAR(ctx, user, groups, ra)
		if err != nil {
			t.Fatal(err)
		}
		if got == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("RBAC never answered allowed=%v for %s %+v", want, user, ra)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// saToken mints a token for a ServiceAccount with the TokenRequest API.
func (c *controlPlane) saToken(t *testing.T, ns, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exp := int64(3600)
	tr, err := c.admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}
