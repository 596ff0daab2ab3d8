package app

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestKubeconfigCommand(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"u.crt", "u.key", "t"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	crt, key, tok := filepath.Join(dir, "u.crt"), filepath.Join(dir, "u.key"), filepath.Join(dir, "t")
	tests := []struct {
		name       string
		args       []string
		wantServer string
		wantUser   clientcmdapi.AuthInfo
		wantErr    string
	}{
		{name: "should point at the cluster's prefix with a client certificate",
			args:       []string{"--cluster=a", "--server=https://gw.example:8443", "--certificate-authority=" + ca, "--client-certificate=" + crt, "--client-key=" + key},
			wantServer: "https://gw.example:8443/clusters/a", wantUser: clientcmdapi.AuthInfo{ClientCertificate: crt, ClientKey: key}},
		{name: "should keep a base path and use a token file",
			args:       []string{"--cluster=b", "--server=https://gw.example/pf/", "--token-file=" + tok},
			wantServer: "https://gw.example/pf/clusters/b", wantUser: clientcmdapi.AuthInfo{TokenFile: tok}},
		{name: "should write an exec plugin",
			args:       []string{"--cluster=c", "--exec-command=kubelogin", "--exec-arg=get-token", "--exec-arg=--oidc-issuer-url=https://idp", "--exec-env=A=1"},
			wantServer: "https://localhost:6443/clusters/c", wantUser: clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
				Command: "kubelogin", Args: []string{"get-token", "--oidc-issuer-url=https://idp"}, Env: []clientcmdapi.ExecEnvVar{{Name: "A", Value: "1"}},
				APIVersion: "client.authentication.k8s.io/v1", InteractiveMode: clientcmdapi.IfAvailableExecInteractiveMode,
			}}},
		{name: "should want --cluster", args: []string{"--server=https://x"}, wantErr: `required flag(s) "cluster" not set`},
		{name: "should refuse a cluster name that is no DNS label", args: []string{"--cluster=a.b"}, wantErr: `--cluster "a.b"`},
		{name: "should refuse http", args: []string{"--cluster=a", "--server=http://gw"}, wantErr: "must be an https:// URL"},
		{name: "should refuse two ways to authenticate", args: []string{"--cluster=a", "--token-file=/t", "--exec-command=x"}, wantErr: "give one of"},
		{name: "should refuse a certificate without key", args: []string{"--cluster=a", "--client-certificate=/c"}, wantErr: "go together"},
		{name: "should refuse a missing CA file", args: []string{"--cluster=a", "--certificate-authority=/nope"}, wantErr: "--certificate-authority: open /nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newKubeconfigCommand()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&bytes.Buffer{})
			cmd.SetArgs(tc.args)
			err := cmd.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := clientcmd.Load(out.Bytes())
			if err != nil {
				t.Fatalf("output is no kubeconfig: %v\n%s", err, out.String())
			}
			rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
			if err != nil {
				t.Fatalf("output does not build a client config: %v", err)
			}
			if rc.Host != tc.wantServer {
				t.Errorf("server %q, want %q", rc.Host, tc.wantServer)
			}
			name := cfg.CurrentContext
			if !strings.HasPrefix(name, "pfgateway-") {
				t.Errorf("context %q", name)
			}
			user := *cfg.AuthInfos[cfg.Contexts[name].AuthInfo]
			user.LocationOfOrigin, user.Extensions = "", nil
			if !reflect.DeepEqual(user, tc.wantUser) {
				t.Errorf("user %+v, want %+v", user, tc.wantUser)
			}
			if strings.Contains(strings.Join(tc.args, " "), "--certificate-authority") && len(cfg.Clusters[cfg.Contexts[name].Cluster].CertificateAuthorityData) == 0 {
				t.Error("CA not embedded")
			}
		})
	}
}
