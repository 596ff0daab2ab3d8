package options

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestDefaultOptions pins every default: changing one is a visible decision.
func TestDefaultOptions(t *testing.T) {
	want := &Options{
		Serving: ServingOptions{
			BindAddress: net.IPv4zero, SecurePort: 6443, ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout: 90 * time.Second, MaxHeaderBytes: 64 << 10, ShutdownGracePeriod: 30 * time.Second,
		},
		Cluster: ClusterOptions{Name: "default", QPS: 50, Burst: 100},
		Kubelet: KubeletOptions{
			PreferredAddressTypes: []string{"Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP"},
			DefaultPort:           10250, DialTimeout: 10 * time.Second, KeepAlive: 30 * time.Second,
			UpgradeTimeout: 30 * time.Second, MaxRedirects: 5,
		},
		Streams:       StreamOptions{SpliceMode: "streams", EarlyReply: true, CreationTimeout: 30 * time.Second, MaxStreamsPerSession: 512},
		Liveness:      NewLivenessOptions(),  // pinned in TestLivenessOptions
		Reconnect:     NewReconnectOptions(), // pinned in TestReconnectOptions
		Metrics:       MetricsOptions{BindAddress: "127.0.0.1:9095"},
		Authorization: AuthorizationOptions{Mode: "Webhook", WebhookCacheAuthorizedTTL: 10 * time.Second, WebhookCacheUnauthorizedTTL: 10 * time.Second},
		Audit:         AuditOptions{WebhookInitialBackoff: 10 * time.Second, BufferSize: 10000, Overflow: "drop"},
		Authn:         NewAuthenticationOptions(), // pinned in TestAuthenticationDefaults
		Limits:        LimitsOptions{},            // no limits: see TestLimitsOptions
		Memory:        MemoryOptions{ReturnInterval: 30 * time.Second, ReturnMinBytes: 4 << 20},
	}
	if got := NewOptions(); !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults changed:\n got %+v\nwant %+v", got, want)
	}
}

func TestFlagsParse(t *testing.T) {
	o := NewOptions()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	err := fs.Parse([]string{"--secure-port=8443", "--kubelet-preferred-address-types=InternalIP,Hostname", "--kubelet-follow-redirects", "--cluster-name=prod"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Serving.SecurePort != 8443 || !reflect.DeepEqual(o.Kubelet.PreferredAddressTypes, []string{"InternalIP", "Hostname"}) || !o.Kubelet.FollowRedirects || o.Cluster.Name != "prod" {
		t.Fatalf("parsed %+v", o)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := func() *Options {
		o := NewOptions()
		o.Serving.TLSCertFile, o.Serving.TLSPrivateKeyFile, o.Serving.ClientCAFile = file, file, file
		o.Kubelet.ClientCertificate, o.Kubelet.ClientKey, o.Kubelet.CertificateAuthority = file, file, file
		return o
	}
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr string
	}{
		{name: "should accept a complete configuration", mutate: func(*Options) {}},
		{name: "should name a missing serving certificate", mutate: func(o *Options) { o.Serving.TLSCertFile = "" }, wantErr: "--tls-cert-file is required"},
		{name: "should name an unreadable file", mutate: func(o *Options) { o.Serving.ClientCAFile = filepath.Join(dir, "nope") }, wantErr: "--client-ca-file"},
		{name: "should refuse a bad port", mutate: func(o *Options) { o.Serving.SecurePort = 70000 }, wantErr: "--secure-port"},
		{name: "should refuse a bad cluster name", mutate: func(o *Options) { o.Cluster.Name = "Prod_1" }, wantErr: "--cluster-name"},
		{name: "should refuse an unknown address type", mutate: func(o *Options) { o.Kubelet.PreferredAddressTypes = []string{"Public"} }, wantErr: "--kubelet-preferred-address-types"},
		{name: "should require a kubelet CA unless insecure is explicit", mutate: func(o *Options) { o.Kubelet.CertificateAuthority = "" }, wantErr: "--kubelet-certificate-authority is required"},
		{name: "should accept explicit insecure kubelet TLS", mutate: func(o *Options) { o.Kubelet.CertificateAuthority = ""; o.Kubelet.InsecureSkipTLSVerify = true }},
		{name: "should refuse a zero upgrade timeout", mutate: func(o *Options) { o.Kubelet.UpgradeTimeout = 0 }, wantErr: "--kubelet-upgrade-timeout"},
		{name: "should bound redirects", mutate: func(o *Options) { o.Kubelet.MaxRedirects = 100 }, wantErr: "--kubelet-max-redirects"},
		{name: "should refuse a bad metrics address", mutate: func(o *Options) { o.Metrics.BindAddress = "9095" }, wantErr: "--metrics-bind-address"},
		{name: "should bound header size", mutate: func(o *Options) { o.Serving.MaxHeaderBytes = 10 }, wantErr: "--max-header-bytes"},
		{name: "should refuse an unknown splice mode", mutate: func(o *Options) { o.Streams.SpliceMode = "fast" }, wantErr: "--splice-mode"},
		{name: "should accept the opaque splice", mutate: func(o *Options) { o.Streams.SpliceMode = "opaque" }},
		{name: "should refuse a forwards limit with the opaque splice", mutate: func(o *Options) { o.Streams.SpliceMode = "opaque"; o.Limits.MaxForwardsPerSession = 10 },
			wantErr: "--max-forwards-per-session needs --splice-mode=streams"},
		{name: "should refuse a zero stream creation timeout", mutate: func(o *Options) { o.Streams.CreationTimeout = 0 }, wantErr: "--stream-creation-timeout"},
		{name: "should bound streams per session", mutate: func(o *Options) { o.Streams.MaxStreamsPerSession = 1 }, wantErr: "--max-streams-per-session"},
		{name: "should refuse a bad metrics port label", mutate: func(o *Options) { o.Streams.MetricsPorts = []int{80, 0} }, wantErr: "--metrics-port-labels: port 0"},
		{name: "should report every problem at once", mutate: func(o *Options) { o.Serving.SecurePort = -1; o.Kubelet.DefaultPort = 0 }, wantErr: "--kubelet-port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.mutate(o)
			err := o.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
