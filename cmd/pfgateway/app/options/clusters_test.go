package options

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
)

func TestClustersOptions(t *testing.T) {
	o := NewClustersOptions()
	if o.ConfigFile != "" {
		t.Errorf("default --clusters-config %q, want none", o.ConfigFile)
	}
	if errs := o.Validate(); len(errs) != 0 {
		t.Errorf("no clusters file: %v", errs)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	missing := filepath.Join(t.TempDir(), "clusters.yaml")
	if err := fs.Parse([]string{"--clusters-config=" + missing}); err != nil {
		t.Fatal(err)
	}
	if o.ConfigFile != missing {
		t.Fatalf("--clusters-config parsed as %q", o.ConfigFile)
	}
	errs := o.Validate()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "--clusters-config: stat "+missing) {
		t.Errorf("missing file: %v", errs)
	}
}

// With --clusters-config the --kubelet-* identity is optional (each kubelet
// cluster brings its own, or there are only API-server backends); without
// it, it stays required.
func TestKubeletIdentityOptionalWithClusters(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "clusters.yaml")
	if err := os.WriteFile(cfg, []byte("clusters: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		clusters string
		want     []string
	}{
		{name: "single cluster", want: []string{"--kubelet-client-certificate is required", "--kubelet-client-key is required", "--kubelet-certificate-authority is required (or set --kubelet-insecure-skip-tls-verify, which is unsafe)"}},
		{name: "clusters file", clusters: cfg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions()
			o.Clusters.ConfigFile = tc.clusters
			var got []string
			if agg, ok := o.Validate().(utilerrors.Aggregate); ok {
				for _, err := range agg.Errors() {
					if strings.Contains(err.Error(), "--kubelet-") {
						got = append(got, err.Error())
					}
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("kubelet errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
