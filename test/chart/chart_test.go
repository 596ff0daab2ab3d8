// Package chart tests the Helm chart in deploy/helm/pfgateway with the
// pinned helm and helm-unittest that hack/helm.sh builds: `helm lint
// --strict` and `helm template` with the default values and each
// ci/*-values.yaml, and the chart's unit tests (tests/*_test.yaml, the
// security-relevant renders). test/controlplane applies the rendered chart
// to a real kube-apiserver.
package chart

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pfgateway/pfgateway/test/chart/helmbin"
)

const chartDir = "../../deploy/helm/pfgateway"

// tools returns helm and helm-unittest, or skips (fails with CI=true, where
// .ci/run builds them) when hack/helm.sh has not been run.
func tools(t *testing.T) (helm, unittest string) {
	t.Helper()
	dir, err := helmbin.Dir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("helm not available (.ci/run runs hack/helm.sh): %v", err)
		}
		t.Skipf("helm not available, run hack/helm.sh: %v", err)
	}
	return filepath.Join(dir, "helm"), filepath.Join(dir, "helm-unittest")
}

func run(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// valueFiles are "" (the defaults) and every ci/*-values.yaml.
func valueFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("ci values files: %v %v (want at least 5)", files, err)
	}
	return append([]string{""}, files...)
}

func TestLintAndTemplate(t *testing.T) {
	helm, _ := tools(t)
	for _, f := range valueFiles(t) {
		name := "defaults"
		if f != "" {
			name = filepath.Base(f)
		}
		t.Run(name, func(t *testing.T) {
			args := []string{"--namespace", "pfg"}
			if f != "" {
				args = append(args, "--values", f)
			}
			run(t, helm, append([]string{"lint", "--strict", chartDir}, args...)...)
			docs := helmbin.SplitManifests(run(t, helm, append([]string{"template", "rel", chartDir}, args...)...))
			kinds := map[string]int{}
			for _, d := range docs {
				kinds[d.Kind]++
				if d.APIVersion == "" || d.Name == "" {
					t.Errorf("a manifest without apiVersion or name: %+v", d)
				}
			}
			// Every values file renders the core of the chart.
			for _, k := range []string{"Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "PodDisruptionBudget"} {
				if kinds[k] == 0 {
					t.Errorf("no %s rendered (kinds: %v)", k, kinds)
				}
			}
		})
	}
}

// TestUnit runs the chart's helm-unittest suites, strict (unknown assertion
// keys are errors).
func TestUnit(t *testing.T) {
	_, unittest := tools(t)
	out := run(t, unittest, "--strict", "--color=false", chartDir)
	// Every test passed, and there were tests.
	m := regexp.MustCompile(`Tests:\s+(\d+) passed, (\d+) total`).FindSubmatch(out)
	if m == nil || string(m[1]) != string(m[2]) || string(m[1]) == "0" {
		t.Errorf("helm-unittest: want every test of a non-empty set passed:\n%s", out)
	}
	t.Logf("%s", lastLines(out, 5))
}

// TestSchemaRejectsTypos checks values.schema.json is in force for
// `helm template` itself, not only in the unit tests.
func TestSchemaRejectsTypos(t *testing.T) {
	helm, _ := tools(t)
	cmd := exec.Command(helm, "template", "rel", chartDir, "--set", "replicaCont=3")
	out, err := cmd.CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("additional properties 'replicaCont' not allowed")) {
		t.Fatalf("helm template with a typo in a key: err %v, output:\n%s", err, out)
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
