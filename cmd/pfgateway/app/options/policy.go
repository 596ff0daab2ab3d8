package options

import (
	"github.com/spf13/pflag"
)

// PolicyOptions point at the gateway policy file (package policy).
type PolicyOptions struct {
	File string
}

// NewPolicyOptions returns the defaults: no gateway policy.
func NewPolicyOptions() PolicyOptions { return PolicyOptions{} }

// AddFlags registers the policy flags on fs.
func (o *PolicyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.File, "policy-file", o.File, "YAML gateway policy that narrows what the cluster's authorization allows: per user or group, the clusters, namespaces, pod labels and ports that may be forwarded; whatever no rule allows is denied. Reloaded on change (a bad edit keeps the policy in force). Empty means no gateway policy. See README, \"Gateway policy\".")
}

// Validate checks the file exists; its content is checked when it is
// loaded at start (a bad file is a start-up error).
func (o *PolicyOptions) Validate() []error {
	if o.File == "" {
		return nil
	}
	return []error{fileFlag("--policy-file", o.File)}
}
