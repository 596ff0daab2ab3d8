package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// kubectlDir holds the machine image's kubectl binaries, one per minor.
const kubectlDir = "/usr/lib/google-cloud-sdk/bin"

// kubectlBinary returns kubectl 1.minor or skips the test.
func kubectlBinary(t *testing.T, minor int) string {
	t.Helper()
	p := fmt.Sprintf("%s/kubectl.1.%d", kubectlDir, minor)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("kubectl 1.%d not installed at %s: %v", minor, p, err)
	}
	return p
}

// newestKubectl returns the newest kubectl 1.27–1.33 present, or skips.
func newestKubectl(t *testing.T) string {
	t.Helper()
	for minor := 33; minor >= 27; minor-- {
		p := fmt.Sprintf("%s/kubectl.1.%d", kubectlDir, minor)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("no kubectl 1.27–1.33 under %s", kubectlDir)
	return ""
}

// kubectlCmd builds a kubectl command with a private HOME and cache dir.
func kubectlCmd(t *testing.T, ctx context.Context, bin, kubeconfig string, args ...string) *exec.Cmd {
	dir := t.TempDir()
	args = append([]string{"--kubeconfig", kubeconfig, "--cache-dir", dir + "/cache", "--request-timeout", "60s", "-n", namespace}, args...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	return cmd
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

var forwardingRE = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)`)

// kubectlPortForward starts `kubectl port-forward pod/hash :7000` and waits
// for its "Forwarding from" line; the process is killed at the end of the
// test.
func kubectlPortForward(t *testing.T, bin, kubeconfig string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := kubectlCmd(t, ctx, bin, kubeconfig, "port-forward", "pod/"+podName, ":"+strconv.Itoa(podPort))
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	local := make(chan string, 1)
	go func() {
		// Keep draining stdout: kubectl prints a line per connection.
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := forwardingRE.FindStringSubmatch(sc.Text()); m != nil && m[2] == strconv.Itoa(podPort) {
				select {
				case local <- "127.0.0.1:" + m[1]:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		cancel()
	})
	select {
	case addr := <-local:
		return addr
	case <-exited:
		t.Fatalf("kubectl port-forward exited before forwarding; stderr:\n%s", stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("kubectl port-forward printed no Forwarding line within 60s; stderr:\n%s", stderr.String())
	}
	return ""
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

// syncBuffer collects a process's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
