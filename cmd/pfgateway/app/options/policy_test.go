package options

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestPolicyOptions(t *testing.T) {
	o := NewPolicyOptions()
	if o.File != "" {
		t.Errorf("default --policy-file %q, want none", o.File)
	}
	if errs := o.Validate(); len(errs) != 0 {
		t.Errorf("no policy file: %v", errs)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	missing := filepath.Join(t.TempDir(), "policy.yaml")
	if err := fs.Parse([]string{"--policy-file=" + missing}); err != nil {
		t.Fatal(err)
	}
	if o.File != missing {
		t.Fatalf("--policy-file parsed as %q", o.File)
	}
	errs := o.Validate()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "--policy-file: stat "+missing) {
		t.Errorf("missing file: %v", errs)
	}
}
