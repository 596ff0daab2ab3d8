// Package clusters serves several clusters from one gateway: the
// --clusters-config file (strict parsing, validation, reload on change) and,
// per configured cluster, what the gateway needs to reach it: an API client,
// a node informer and resolver (backend kubelet) or an upstream dialer
// (backend apiserver), a SubjectAccessReview authorizer and the read-only
// relay.
package clusters

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/pfgateway/pfgateway/filewatch"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxFileSize bounds a clusters file; a larger one is refused unread.
const MaxFileSize = 1 << 20

// MaxClusters bounds the clusters of one file, and so the values of every
// metric's cluster label.
const MaxClusters = 100

// Backend is how the gateway reaches a cluster's pods.
type Backend string

const (
	// BackendKubelet dials the pod's kubelet, as the API server does.
	BackendKubelet Backend = "kubelet"
	// BackendAPIServer forwards the request to the cluster's API server,
	// impersonating the caller; the gateway needs no route to the nodes.
	BackendAPIServer Backend = "apiserver"
)

// File is the --clusters-config file.
type File struct {
	// AuthenticationCluster names the cluster whose TokenReview API checks
	// bearer tokens (--authentication-token-webhook); empty is the first
	// cluster. It is fixed until the gateway restarts.
	AuthenticationCluster string `json:"authenticationCluster,omitempty"`
	// Clusters are the clusters served; the first one also serves paths
	// without a /clusters/{name} prefix.
	Clusters []Cluster `json:"clusters"`
}

// Cluster is one served cluster.
type Cluster struct {
	// Name is the {name} of /clusters/{name}/…, a DNS label.
	Name string `json:"name"`
	// Kubeconfig is the gateway's access to the cluster's API server; a
	// relative path is relative to the clusters file's directory.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Context in Kubeconfig; empty is its current context.
	Context string `json:"context,omitempty"`
	// InCluster uses the pod's service account instead of a kubeconfig.
	InCluster bool `json:"inCluster,omitempty"`
	// Backend is kubelet (the default) or apiserver.
	Backend Backend `json:"backend,omitempty"`
	// KubeletClientCertificate and KubeletClientKey (together), and
	// KubeletCertificateAuthority replace the gateway's --kubelet-client-*
	// and --kubelet-certificate-authority files for this cluster's kubelets
	// (backend kubelet only): each cluster's kubelets usually trust, and are
	// signed by, a CA of their own. Relative paths as for Kubeconfig.
	KubeletClientCertificate    string `json:"kubeletClientCertificate,omitempty"`
	KubeletClientKey            string `json:"kubeletClientKey,omitempty"`
	KubeletCertificateAuthority string `json:"kubeletCertificateAuthority,omitempty"`
}

// ownKubeletTLS says whether cl replaces any of the gateway's kubelet files.
func (cl Cluster) ownKubeletTLS() bool {
	return cl.KubeletClientCertificate != "" || cl.KubeletCertificateAuthority != ""
}

// Config is a parsed, validated clusters file. It is immutable.
type Config struct {
	// Clusters in file order, Backend set, Kubeconfig made absolute.
	Clusters []Cluster
	// AuthenticationCluster is never empty.
	AuthenticationCluster string
	// Hash is the SHA-256 of the file's bytes, hex.
	Hash string
}

// Names are the clusters' names in file order.
func (c *Config) Names() []string {
	out := make([]string, len(c.Clusters))
	for i, cl := range c.Clusters {
		out[i] = cl.Name
	}
	return out
}

// Get returns the cluster called name.
func (c *Config) Get(name string) (Cluster, bool) {
	for _, cl := range c.Clusters {
		if cl.Name == name {
			return cl, true
		}
	}
	return Cluster{}, false
}

// Parse decodes a clusters file strictly and validates it; dir resolves
// relative kubeconfig paths. Every problem is reported with its field path.
func Parse(data []byte, dir string) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("clusters file is %d bytes, larger than the %d allowed", len(data), MaxFileSize)
	}
	var f File
	// Strict: an unknown or duplicated field is an error, and field names
	// are case-sensitive (encoding/json, under yaml.UnmarshalStrict, would
	// take "kubeConfig" for "kubeconfig"), as the API server decodes.
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("decoding the clusters file: %w", err)
	}
	strict, err := sigsjson.UnmarshalStrict(js, &f)
	if err == nil {
		err = errors.Join(strict...)
	}
	if err != nil {
		return nil, fmt.Errorf("decoding the clusters file: %w", err)
	}
	if errs := validate(&f); len(errs) > 0 {
		return nil, fmt.Errorf("invalid clusters file: %w", errs.ToAggregate())
	}
	c := &Config{Clusters: make([]Cluster, len(f.Clusters)), AuthenticationCluster: f.AuthenticationCluster, Hash: filewatch.Hash(data)}
	for i, cl := range f.Clusters {
		if cl.Backend == "" {
			cl.Backend = BackendKubelet
		}
		for _, p := range []*string{&cl.Kubeconfig, &cl.KubeletClientCertificate, &cl.KubeletClientKey, &cl.KubeletCertificateAuthority} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
		c.Clusters[i] = cl
	}
	if c.AuthenticationCluster == "" {
		c.AuthenticationCluster = c.Clusters[0].Name
	}
	return c, nil
}

func validate(f *File) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("clusters")
	switch {
	case len(f.Clusters) == 0:
		errs = append(errs, field.Required(p, "at least one cluster is required"))
	case len(f.Clusters) > MaxClusters:
		errs = append(errs, field.TooMany(p, len(f.Clusters), MaxClusters))
	}
	seen := map[string]bool{}
	for i, cl := range f.Clusters {
		ip := p.Index(i)
		if msgs := validation.IsDNS1123Label(cl.Name); len(msgs) > 0 {
			for _, m := range msgs {
				errs = append(errs, field.Invalid(ip.Child("name"), cl.Name, m))
			}
		} else if seen[cl.Name] {
			errs = append(errs, field.Duplicate(ip.Child("name"), cl.Name))
		}
		seen[cl.Name] = true
		switch {
		case cl.Kubeconfig == "" && !cl.InCluster:
			errs = append(errs, field.Required(ip.Child("kubeconfig"), "one of kubeconfig or inCluster: true is required"))
		case cl.Kubeconfig != "" && cl.InCluster:
			errs = append(errs, field.Invalid(ip.Child("inCluster"), true, "kubeconfig and inCluster are mutually exclusive"))
		}
		if cl.Context != "" && cl.Kubeconfig == "" {
			errs = append(errs, field.Invalid(ip.Child("context"), cl.Context, "context needs a kubeconfig"))
		}
		if (cl.KubeletClientCertificate == "") != (cl.KubeletClientKey == "") {
			errs = append(errs, field.Required(ip.Child("kubeletClientKey"), "kubeletClientCertificate and kubeletClientKey go together"))
		}
		switch cl.Backend {
		case "", BackendKubelet:
		case BackendAPIServer:
			if cl.ownKubeletTLS() {
				errs = append(errs, field.Forbidden(ip.Child("backend"), "kubelet certificates are for backend kubelet; backend apiserver reaches no kubelet"))
			}
		default:
			errs = append(errs, field.NotSupported(ip.Child("backend"), cl.Backend, []Backend{BackendKubelet, BackendAPIServer}))
		}
	}
	if a := f.AuthenticationCluster; a != "" && !seen[a] {
		errs = append(errs, field.NotFound(field.NewPath("authenticationCluster"), a))
	}
	return errs
}
