package options

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
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
