// Package helmbin finds the pinned helm and helm-unittest that hack/helm.sh
// builds, renders the chart, and splits the manifests; test/chart and
// test/controlplane share it.
package helmbin

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"sigs.k8s.io/yaml"
)

// Versions hack/helm.sh builds by default; keep the two in step.
const (
	HelmVersion     = "v3.21.3"
	UnittestVersion = "v1.1.2"
)

// Dir is where hack/helm.sh put the binaries: $PFGATEWAY_HELM_DIR, or its
// cache directory under $PFGATEWAY_CACHE (default ~/.cache/pfgateway).
func Dir() (string, error) {
	dir := os.Getenv("PFGATEWAY_HELM_DIR")
	if dir == "" {
		cache := os.Getenv("PFGATEWAY_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", err
			}
			cache = filepath.Join(home, ".cache", "pfgateway")
		}
		dir = filepath.Join(cache, "helm-"+HelmVersion+"-unittest-"+UnittestVersion)
	}
	for _, b := range []string{"helm", "helm-unittest"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s not found in %s (run hack/helm.sh): %v", b, dir, err)
		}
	}
	return dir, nil
}

// ChartDir is deploy/helm/pfgateway, found from this source file.
func ChartDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "deploy", "helm", "pfgateway")
}

// Manifest is one rendered object: its raw YAML and identity.
type Manifest struct {
	Raw        []byte
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
}

// SplitManifests splits `helm template` output into its non-empty objects.
func SplitManifests(out []byte) []Manifest {
	var ms []Manifest
	for _, doc := range bytes.Split(out, []byte("\n---")) {
		var m struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &m); err != nil || m.Kind == "" {
			continue
		}
		ms = append(ms, Manifest{Raw: bytes.TrimSpace(doc), APIVersion: m.APIVersion, Kind: m.Kind, Name: m.Metadata.Name, Namespace: m.Metadata.Namespace})
	}
	return ms
}

// Template renders the chart as release in namespace with the values
// files and --set-string style extra arguments.
func Template(helm, release, namespace string, args ...string) ([]byte, error) {
	cmd := exec.Command(helm, append([]string{"template", release, ChartDir(), "--namespace", namespace}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template: %v: %s", err, stderr.Bytes())
	}
	return out, nil
}
