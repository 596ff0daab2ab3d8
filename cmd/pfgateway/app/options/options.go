// Package options holds pfgateway's flags: one struct per concern, each with
// defaults, flags named like the kube-apiserver's where the concept is the
// same, and validation that names the flag at fault.
package options

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/pfgateway/pfgateway/resolve"
)

// Options are all of pfgateway's settings.
type Options struct {
	Serving       ServingOptions
	Cluster       ClusterOptions
	Kubelet       KubeletOptions
	Streams       StreamOptions
	Liveness      LivenessOptions
	Reconnect     ReconnectOptions
	Metrics       MetricsOptions
	Authorization AuthorizationOptions
	Audit         AuditOptions
	Authn         AuthenticationOptions
	Policy        PolicyOptions
	Limits        LimitsOptions
	Shutdown      ShutdownOptions
	Clusters      ClustersOptions
	Memory        MemoryOptions
}

// ServingOptions configure the client-facing HTTPS listener.
type ServingOptions struct {
	BindAddress         net.IP
	SecurePort          int
	TLSCertFile         string
	TLSPrivateKeyFile   string
	ClientCAFile        string
	ReadHeaderTimeout   time.Duration
	IdleTimeout         time.Duration
	MaxHeaderBytes      int
	ShutdownGracePeriod time.Duration
}

// ClusterOptions say which cluster the gateway fronts and how it reads it.
type ClusterOptions struct {
	Name       string
	Kubeconfig string
	QPS        float32
	Burst      int
}

// KubeletOptions configure the gateway's connections to kubelets.
type KubeletOptions struct {
	ClientCertificate     string
	ClientKey             string
	CertificateAuthority  string
	InsecureSkipTLSVerify bool
	PreferredAddressTypes []string
	DefaultPort           int
	DialTimeout           time.Duration
	KeepAlive             time.Duration
	UpgradeTimeout        time.Duration
	FollowRedirects       bool
	MaxRedirects          int
}

// Splice modes: how an upgraded SPDY (or WebSocket-tunnelled SPDY)
// connection is carried.
const (
	// SpliceStreams relays SPDY frame by frame and sees every forwarded
	// connection (package relay).
	SpliceStreams = "streams"
	// SpliceOpaque copies bytes as the kube-apiserver does.
	SpliceOpaque = "opaque"
)

// StreamOptions configure how upgraded port-forward connections are relayed.
type StreamOptions struct {
	SpliceMode           string
	EarlyReply           bool
	CreationTimeout      time.Duration
	MaxStreamsPerSession int
	MetricsPorts         []int
}

// MetricsOptions configure the admin listener (/metrics, /healthz, /readyz).
type MetricsOptions struct {
	BindAddress string
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	types := make([]string, 0, len(resolve.DefaultAddressTypes))
	for _, t := range resolve.DefaultAddressTypes {
		types = append(types, string(t))
	}
	return &Options{
		Serving: ServingOptions{
			BindAddress:         net.IPv4zero,
			SecurePort:          6443,
			ReadHeaderTimeout:   10 * time.Second,
			IdleTimeout:         90 * time.Second,
			MaxHeaderBytes:      64 << 10,
			ShutdownGracePeriod: 30 * time.Second,
		},
		Cluster: ClusterOptions{Name: "default", QPS: 50, Burst: 100},
		Kubelet: KubeletOptions{
			PreferredAddressTypes: types,
			DefaultPort:           resolve.DefaultKubeletPort,
			DialTimeout:           10 * time.Second,
			KeepAlive:             30 * time.Second,
			UpgradeTimeout:        30 * time.Second,
			MaxRedirects:          5,
		},
		Streams: StreamOptions{
			SpliceMode: SpliceStreams,
			// On by default: it is what brings a new connection's latency
			// under the opaque splice's (BENCHMARKS.md), and errors still
			// arrive on the error stream (docs/stream-relay.md §8).
			EarlyReply:           true,
			CreationTimeout:      30 * time.Second,
			MaxStreamsPerSession: 512,
		},
		Liveness:      NewLivenessOptions(),
		Reconnect:     NewReconnectOptions(),
		Metrics:       MetricsOptions{BindAddress: "127.0.0.1:9095"},
		Authorization: NewAuthorizationOptions(),
		Audit:         NewAuditOptions(),
		Authn:         NewAuthenticationOptions(),
		Policy:        NewPolicyOptions(),
		Limits:        NewLimitsOptions(),
		Shutdown:      NewShutdownOptions(),
		Memory:        NewMemoryOptions(),
		Clusters:      NewClustersOptions(),
	}
}

// AddFlags registers every option on fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	s := &o.Serving
	fs.IPVar(&s.BindAddress, "bind-address", s.BindAddress, "The IP address on which to listen for --secure-port.")
	fs.IntVar(&s.SecurePort, "secure-port", s.SecurePort, "The port on which to serve HTTPS to clients (0 picks a free port).")
	fs.StringVar(&s.TLSCertFile, "tls-cert-file", s.TLSCertFile, "File containing the gateway's x509 serving certificate (with intermediates).")
	fs.StringVar(&s.TLSPrivateKeyFile, "tls-private-key-file", s.TLSPrivateKeyFile, "File containing the private key matching --tls-cert-file.")
	fs.StringVar(&s.ClientCAFile, "client-ca-file", s.ClientCAFile, "CA bundle that signs client certificates; the certificate's CN is the user name, O the groups. Reloaded on change.")
	fs.DurationVar(&s.ReadHeaderTimeout, "read-header-timeout", s.ReadHeaderTimeout, "Maximum time to read a request's headers.")
	fs.DurationVar(&s.IdleTimeout, "idle-timeout", s.IdleTimeout, "Maximum time a keep-alive connection may wait for its next request (does not apply to port-forward streams).")
	fs.IntVar(&s.MaxHeaderBytes, "max-header-bytes", s.MaxHeaderBytes, "Maximum size of a request's headers.")
	fs.DurationVar(&s.ShutdownGracePeriod, "shutdown-grace-period", s.ShutdownGracePeriod, "On SIGTERM, how long live sessions may go on before they are closed.")

	c := &o.Cluster
	fs.StringVar(&c.Name, "cluster-name", c.Name, "Name of the cluster served, as in /clusters/{name}/….")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "Kubeconfig for the cluster's API server; empty means the in-cluster service account.")
	fs.Float32Var(&c.QPS, "kube-api-qps", c.QPS, "Queries per second to the API server.")
	fs.IntVar(&c.Burst, "kube-api-burst", c.Burst, "Burst of queries to the API server.")

	k := &o.Kubelet
	fs.StringVar(&k.ClientCertificate, "kubelet-client-certificate", k.ClientCertificate, "Client certificate the gateway presents to kubelets (needs nodes/proxy).")
	fs.StringVar(&k.ClientKey, "kubelet-client-key", k.ClientKey, "Private key for --kubelet-client-certificate.")
	fs.StringVar(&k.CertificateAuthority, "kubelet-certificate-authority", k.CertificateAuthority, "CA bundle that verifies kubelet serving certificates.")
	fs.BoolVar(&k.InsecureSkipTLSVerify, "kubelet-insecure-skip-tls-verify", k.InsecureSkipTLSVerify, "Do not verify kubelet serving certificates (unsafe; for clusters whose kubelets use self-signed certificates).")
	fs.StringSliceVar(&k.PreferredAddressTypes, "kubelet-preferred-address-types", k.PreferredAddressTypes, "Node address types to try, in order, for the kubelet's host.")
	fs.IntVar(&k.DefaultPort, "kubelet-port", k.DefaultPort, "Kubelet port when a node does not publish status.daemonEndpoints.kubeletEndpoint.")
	fs.DurationVar(&k.DialTimeout, "kubelet-dial-timeout", k.DialTimeout, "Timeout for the TCP connect and TLS handshake to a kubelet.")
	fs.DurationVar(&k.KeepAlive, "kubelet-keepalive", k.KeepAlive, "TCP keepalive period of kubelet connections.")
	fs.DurationVar(&k.UpgradeTimeout, "kubelet-upgrade-timeout", k.UpgradeTimeout, "Timeout from dialing a kubelet to its upgrade response.")
	fs.BoolVar(&k.FollowRedirects, "kubelet-follow-redirects", k.FollowRedirects, "Follow 302 redirects from kubelets, to the same host only.")
	fs.IntVar(&k.MaxRedirects, "kubelet-max-redirects", k.MaxRedirects, "Maximum redirects followed with --kubelet-follow-redirects.")

	st := &o.Streams
	fs.StringVar(&st.SpliceMode, "splice-mode", st.SpliceMode, "How SPDY and WebSocket-tunnel sessions are relayed: \"streams\" (frame by frame, with per-connection metrics, logs and policy) or \"opaque\" (a byte copy, as the kube-apiserver does). Legacy WebSocket sessions are always opaque.")
	fs.BoolVar(&st.EarlyReply, "early-stream-reply", st.EarlyReply, "With --splice-mode=streams, answer a client's stream creation without waiting for the kubelet's reply (saves a gateway-kubelet round trip per new forwarded connection; errors still arrive on the error stream).")
	fs.DurationVar(&st.CreationTimeout, "stream-creation-timeout", st.CreationTimeout, "With --splice-mode=streams, how long the gateway waits for a pair's second stream or the kubelet's reply before resetting the pair (the kubelet's own default is 30s).")
	fs.IntVar(&st.MaxStreamsPerSession, "max-streams-per-session", st.MaxStreamsPerSession, "With --splice-mode=streams, the most open SPDY streams (two per forwarded connection) a session may hold; more are refused.")
	fs.IntSliceVar(&st.MetricsPorts, "metrics-port-labels", st.MetricsPorts, "Container ports that get their own port label on forwarded-connection metrics; others are labelled \"other\".")

	o.Liveness.AddFlags(fs)
	o.Reconnect.AddFlags(fs)
	fs.StringVar(&o.Metrics.BindAddress, "metrics-bind-address", o.Metrics.BindAddress, "host:port serving /metrics, /healthz, /readyz and the unauthenticated session admin API (/sessions); keep it on localhost.")
	o.Authorization.AddFlags(fs)
	o.Audit.AddFlags(fs)
	o.Authn.AddFlags(fs)
	o.Policy.AddFlags(fs)
	o.Limits.AddFlags(fs)
	o.Shutdown.AddFlags(fs)
	o.Memory.AddFlags(fs)
	o.Clusters.AddFlags(fs)
}

// Validate returns every problem, each naming its flag.
func (o *Options) Validate() error {
	var errs []error
	s := o.Serving
	if s.SecurePort < 0 || s.SecurePort > 65535 {
		errs = append(errs, fmt.Errorf("--secure-port %d must be between 0 and 65535", s.SecurePort))
	}
	errs = append(errs, fileFlag("--tls-cert-file", s.TLSCertFile), fileFlag("--tls-private-key-file", s.TLSPrivateKeyFile))
	if s.ClientCAFile != "" { // optional: one authenticator among others
		errs = append(errs, fileFlag("--client-ca-file", s.ClientCAFile))
	}
	errs = append(errs, positive("--read-header-timeout", s.ReadHeaderTimeout), positive("--idle-timeout", s.IdleTimeout))
	if s.MaxHeaderBytes < 4096 || s.MaxHeaderBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("--max-header-bytes %d must be between 4096 and 1048576", s.MaxHeaderBytes))
	}
	if s.ShutdownGracePeriod < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-grace-period must not be negative"))
	}
	if msgs := validation.IsDNS1123Subdomain(o.Cluster.Name); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--cluster-name %q: %v", o.Cluster.Name, msgs))
	}
	if o.Cluster.Kubeconfig != "" {
		errs = append(errs, fileFlag("--kubeconfig", o.Cluster.Kubeconfig))
	}
	if o.Cluster.QPS <= 0 || o.Cluster.Burst <= 0 {
		errs = append(errs, fmt.Errorf("--kube-api-qps and --kube-api-burst must be positive"))
	}
	k := o.Kubelet
	// With --clusters-config the kubelet identity may come from each
	// cluster's entry, or be unneeded (API-server backends only): package
	// clusters checks every kubelet cluster has one.
	if o.Clusters.ConfigFile == "" || k.ClientCertificate != "" || k.ClientKey != "" {
		errs = append(errs, fileFlag("--kubelet-client-certificate", k.ClientCertificate), fileFlag("--kubelet-client-key", k.ClientKey))
	}
	switch {
	case k.CertificateAuthority != "":
		errs = append(errs, fileFlag("--kubelet-certificate-authority", k.CertificateAuthority))
	case !k.InsecureSkipTLSVerify && o.Clusters.ConfigFile == "":
		errs = append(errs, errors.New("--kubelet-certificate-authority is required (or set --kubelet-insecure-skip-tls-verify, which is unsafe)"))
	}
	if _, err := resolve.ParseAddressTypes(k.PreferredAddressTypes); err != nil {
		errs = append(errs, fmt.Errorf("--kubelet-preferred-address-types: %w", err))
	}
	if k.DefaultPort < 1 || k.DefaultPort > 65535 {
		errs = append(errs, fmt.Errorf("--kubelet-port %d must be between 1 and 65535", k.DefaultPort))
	}
	errs = append(errs, positive("--kubelet-dial-timeout", k.DialTimeout), positive("--kubelet-upgrade-timeout", k.UpgradeTimeout))
	if k.MaxRedirects < 0 || k.MaxRedirects > 20 {
		errs = append(errs, fmt.Errorf("--kubelet-max-redirects %d must be between 0 and 20", k.MaxRedirects))
	}
	st := o.Streams
	if st.SpliceMode != SpliceStreams && st.SpliceMode != SpliceOpaque {
		errs = append(errs, fmt.Errorf("--splice-mode %q must be %q or %q", st.SpliceMode, SpliceStreams, SpliceOpaque))
	}
	errs = append(errs, positive("--stream-creation-timeout", st.CreationTimeout))
	if st.MaxStreamsPerSession < 2 || st.MaxStreamsPerSession > 1<<16 {
		errs = append(errs, fmt.Errorf("--max-streams-per-session %d must be between 2 and 65536", st.MaxStreamsPerSession))
	}
	if o.Limits.MaxForwardsPerSession > 0 && st.SpliceMode == SpliceOpaque {
		errs = append(errs, fmt.Errorf("--max-forwards-per-session needs --splice-mode=%s: the opaque splice does not see forwarded connections", SpliceStreams))
	}
	if len(st.MetricsPorts) > 64 {
		errs = append(errs, fmt.Errorf("--metrics-port-labels names %d ports, at most 64 are allowed", len(st.MetricsPorts)))
	}
	for _, p := range st.MetricsPorts {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("--metrics-port-labels: port %d must be between 1 and 65535", p))
		}
	}
	if _, _, err := net.SplitHostPort(o.Metrics.BindAddress); err != nil {
		errs = append(errs, fmt.Errorf("--metrics-bind-address %q: %v", o.Metrics.BindAddress, err))
	}
	errs = append(errs, o.Liveness.Validate()...)
	errs = append(errs, o.Reconnect.Validate()...)
	errs = append(errs, o.Authorization.Validate()...)
	errs = append(errs, o.Audit.Validate()...)
	errs = append(errs, o.Authn.Validate()...)
	errs = append(errs, o.Policy.Validate()...)
	errs = append(errs, o.Limits.Validate()...)
	errs = append(errs, o.Shutdown.Validate()...)
	errs = append(errs, o.Memory.Validate()...)
	errs = append(errs, o.Clusters.Validate()...)
	return utilerrors.NewAggregate(errs)
}

func fileFlag(flag, path string) error {
	if path == "" {
		return fmt.Errorf("%s is required", flag)
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s: %v", flag, err)
	}
	return nil
}

func positive(flag string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s must be positive, got %v", flag, d)
	}
	return nil
}
