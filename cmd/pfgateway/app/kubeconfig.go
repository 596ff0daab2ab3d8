package app

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeconfigOptions are the flags of `pfgateway kubeconfig`.
type kubeconfigOptions struct {
	cluster, server, caFile, namespace string
	// One way for the user to authenticate, or none (filled in later).
	clientCert, clientKey, tokenFile string
	execCommand, execAPIVersion      string
	execArgs, execEnv                []string
}

func newKubeconfigCommand() *cobra.Command {
	o := kubeconfigOptions{server: "https://localhost:6443", execAPIVersion: "client.authentication.k8s.io/v1"}
	cmd := &cobra.Command{
		Use:   "kubeconfig --cluster NAME",
		Short: "Print a kubeconfig that reaches one cluster through the gateway",
		Long: `kubeconfig prints, on standard output, a kubeconfig whose server is
{--server}/clusters/{--cluster}, trusting --certificate-authority (the CA of
the gateway's serving certificate), with one way for the user to
authenticate: a client certificate, a token file or an exec plugin.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return writeKubeconfig(cmd.OutOrStdout(), o) },
	}
	fs := cmd.Flags()
	fs.StringVar(&o.cluster, "cluster", o.cluster, "Name of the cluster, as in the gateway's --clusters-config (or its --cluster-name).")
	fs.StringVar(&o.server, "server", o.server, "The gateway's base URL, as users reach it.")
	fs.StringVar(&o.caFile, "certificate-authority", o.caFile, "CA bundle that verifies the gateway's serving certificate; embedded. Empty trusts the system roots.")
	fs.StringVar(&o.namespace, "namespace", o.namespace, "Default namespace of the context.")
	fs.StringVar(&o.clientCert, "client-certificate", o.clientCert, "User's client certificate file (referenced, not embedded).")
	fs.StringVar(&o.clientKey, "client-key", o.clientKey, "User's client key file (referenced, not embedded).")
	fs.StringVar(&o.tokenFile, "token-file", o.tokenFile, "File holding the user's bearer token (re-read by client-go).")
	fs.StringVar(&o.execCommand, "exec-command", o.execCommand, "Credential plugin that prints the user's ExecCredential (e.g. an OIDC login helper).")
	fs.StringSliceVar(&o.execArgs, "exec-arg", o.execArgs, "Argument of --exec-command (repeatable).")
	fs.StringSliceVar(&o.execEnv, "exec-env", o.execEnv, "NAME=VALUE environment of --exec-command (repeatable).")
	fs.StringVar(&o.execAPIVersion, "exec-api-version", o.execAPIVersion, "API version of the ExecCredential --exec-command prints.")
	_ = cmd.MarkFlagRequired("cluster")
	return cmd
}

func writeKubeconfig(w io.Writer, o kubeconfigOptions) error {
	cfg, err := buildKubeconfig(o)
	if err != nil {
		return err
	}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// buildKubeconfig returns the kubeconfig o describes; its cluster, user and
// context are all named pfgateway-{cluster}, so several merge cleanly.
func buildKubeconfig(o kubeconfigOptions) (*clientcmdapi.Config, error) {
	if msgs := validation.IsDNS1123Label(o.cluster); len(msgs) > 0 {
		return nil, fmt.Errorf("--cluster %q: %s", o.cluster, strings.Join(msgs, "; "))
	}
	base, err := url.Parse(o.server)
	if err != nil || base.Scheme != "https" || base.Host == "" || base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("--server %q must be an https:// URL without query", o.server)
	}
	name := "pfgateway-" + o.cluster
	cl := &clientcmdapi.Cluster{Server: base.JoinPath("clusters", o.cluster).String()}
	if o.caFile != "" {
		if cl.CertificateAuthorityData, err = os.ReadFile(o.caFile); err != nil {
			return nil, fmt.Errorf("--certificate-authority: %w", err)
		}
	}
	user := &clientcmdapi.AuthInfo{}
	ways := 0
	if o.clientCert != "" || o.clientKey != "" {
		if o.clientCert == "" || o.clientKey == "" {
			return nil, errors.New("--client-certificate and --client-key go together")
		}
		user.ClientCertificate, user.ClientKey = o.clientCert, o.clientKey
		ways++
	}
	if o.tokenFile != "" {
		user.TokenFile = o.tokenFile
		ways++
	}
	if o.execCommand != "" {
		ex := &clientcmdapi.ExecConfig{Command: o.execCommand, Args: o.execArgs, APIVersion: o.execAPIVersion, InteractiveMode: clientcmdapi.IfAvailableExecInteractiveMode}
		for _, kv := range o.execEnv {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("--exec-env %q must be NAME=VALUE", kv)
			}
			ex.Env = append(ex.Env, clientcmdapi.ExecEnvVar{Name: k, Value: v})
		}
		user.Exec = ex
		ways++
	}
	if ways > 1 {
		return nil, errors.New("give one of --client-certificate/--client-key, --token-file or --exec-command")
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = cl
	cfg.AuthInfos[name] = user
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: o.namespace}
	cfg.CurrentContext = name
	return cfg, nil
}
