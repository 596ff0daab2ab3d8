package e2e

import (
	"net"
	"testing"

	"github.com/pfgateway/pfgateway/test/kubectlrun"
)

// dispatcherKubectl chooses one of the image's kubectl binaries by the
// server's /version.
const dispatcherKubectl = kubectlrun.Dispatcher

// syncBuffer collects a process's output.
type syncBuffer = kubectlrun.SyncBuffer

func kubectlBinary(t testing.TB, minor int) string { t.Helper(); return kubectlrun.Binary(t, minor) }

// kubectlPortForward starts `kubectl [flags] port-forward pod/{pod} :{port}`
// with env's kubeconfig (kubectlrun.PortForward).
func (e *env) kubectlPortForward(t testing.TB, bin, pod string, port int, flags ...string) (string, *kubectlrun.Run, error) {
	t.Helper()
	return kubectlrun.PortForward(t, bin, e.kubeconfig, pod, port, flags...)
}

// kubectlDial runs `kubectl port-forward pod/NAME :PORT` with extra flags and
// returns a connection to the local port; both end with the test.
func (e *env) kubectlDial(t *testing.T, bin, pod string, port int, flags ...string) net.Conn {
	t.Helper()
	addr, run, err := e.kubectlPortForward(t, bin, pod, port, flags...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(run.Kill)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
