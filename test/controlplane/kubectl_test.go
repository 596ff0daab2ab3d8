package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/test/kubectlrun"
)

// syncBuffer collects a process's output.
type syncBuffer = kubectlrun.SyncBuffer

func kubectlBinary(t *testing.T, minor int) string { t.Helper(); return kubectlrun.Binary(t, minor) }

func newestKubectl(t *testing.T) string { t.Helper(); return kubectlrun.Newest(t) }

// kubectlCmd builds a kubectl command in the test namespace with a private
// HOME and cache dir.
func kubectlCmd(t *testing.T, ctx context.Context, bin, kubeconfig string, args ...string) *exec.Cmd {
	return kubectlrun.Command(t, ctx, bin, kubeconfig, append([]string{"-n", namespace}, args...)...)
}

// kubectl runs a short kubectl command and returns its output.
func kubectl(t *testing.T, bin, kubeconfig string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := kubectlCmd(t, ctx, bin, kubeconfig, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// kubectlPortForward starts `kubectl port-forward pod/hash :7000` and waits
// for its "Forwarding from" line; the process is killed at the end of the
// test.
func kubectlPortForward(t *testing.T, bin, kubeconfig string) string {
	t.Helper()
	addr, _, err := kubectlrun.PortForward(t, bin, kubeconfig, podName, podPort, "-n", namespace)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestKubectlPortForward: real kubectl binaries forward through the gateway
// to a pod the real API server knows, as a user RBAC allows; 4 MiB each way,
// SHA-256 checked both ways. kubectl 1.27 speaks SPDY, 1.33 tries the
// WebSocket tunnel first.
func TestKubectlPortForward(t *testing.T) {
	c := needControlPlane(t)
	g := c.startGateway(t)
	kubeconfig := c.kubeconfig(t, g.addr, c.user(t, userAllowed, "devs"))
	for i, minor := range []int{27, 33} {
		t.Run(fmt.Sprintf("kubectl-1.%d", minor), func(t *testing.T) {
			bin := kubectlBinary(t, minor)
			addr := kubectlPortForward(t, bin, kubeconfig)
			exchangeVia(t, addr, uint64(100+i))
		})
	}
}
