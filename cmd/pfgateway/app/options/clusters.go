package options

import (
	"github.com/spf13/pflag"
)

// ClustersOptions point at the clusters file (package clusters).
type ClustersOptions struct {
	ConfigFile string
}

// NewClustersOptions returns the defaults: one cluster, from --cluster-name
// and --kubeconfig.
func NewClustersOptions() ClustersOptions { return ClustersOptions{} }

// AddFlags registers the clusters flags on fs.
func (o *ClustersOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.ConfigFile, "clusters-config", o.ConfigFile, "YAML file naming the clusters served (clusters: [{name, kubeconfig, context, inCluster, backend: kubelet|apiserver}], authenticationCluster), each under /clusters/{name}/…; the first also serves paths without the prefix. Reloaded on change (a bad edit keeps the clusters in force). Replaces --cluster-name and --kubeconfig, which are then ignored. See README, \"Several clusters\".")
}

// Validate checks the file exists; its content is checked when it is
// loaded at start (a bad file is a start-up error).
func (o *ClustersOptions) Validate() []error {
	if o.ConfigFile == "" {
		return nil
	}
	return []error{fileFlag("--clusters-config", o.ConfigFile)}
}
