package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// kubectlDir holds the kubectl binaries of this machine image, one per minor.
const kubectlDir = "/usr/lib/google-cloud-sdk/bin"

// dispatcherKubectl chooses one of those binaries by the server's /version.
const dispatcherKubectl = "/usr/bin/kubectl"

// kubectlBinary returns the kubectl 1.minor binary or skips the test.
func kubectlBinary(t testing.TB, minor int) string {
	t.Helper()
	p := fmt.Sprintf("%s/kubectl.1.%d", kubectlDir, minor)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("kubectl 1.%d not installed at %s: %v", minor, p, err)
	}
	return p
}

// syncBuffer collects a process's output for assertions and failure messages.
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

// kubectlRun is a running `kubectl port-forward`.
type kubectlRun struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan struct{} // closed when the process has exited
	waitErr        error
}

var forwardingRE = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)`)

// kubectlPortForward starts `kubectl [flags] port-forward pod/{pod} :{port}`
// with env's kubeconfig and a private cache dir and HOME, and waits (at most 60s)
// for its "Forwarding from 127.0.0.1:N -> PORT" line. It returns the local
// address, or the run and an error when kubectl exits first. The process
// is killed at the end of the test.
func (e *env) kubectlPortForward(t testing.TB, bin, pod string, port int, flags ...string) (string, *kubectlRun, error) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // hard bound on the process
	args := append([]string{"--kubeconfig", e.kubeconfig, "--cache-dir", dir + "/cache", "--request-timeout", "60s"}, flags...)
	args = append(args, "port-forward", "pod/"+pod, ":"+strconv.Itoa(port))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	r := &kubectlRun{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = r.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.exited
		cancel()
	})
	local := make(chan string, 1)
	go func() {
		// Keep draining stdout after the first line: kubectl prints
		// "Handling connection for N" per connection and would block on a
		// full pipe.
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = r.stdout.Write([]byte(line + "\n"))
			if m := forwardingRE.FindStringSubmatch(line); m != nil && !sent && m[2] == strconv.Itoa(port) {
				local <- "127.0.0.1:" + m[1]
				sent = true
			}
		}
		r.waitErr = cmd.Wait()
		close(r.exited)
	}()
	select {
	case addr := <-local:
		return addr, r, nil
	case <-r.exited:
		return "", r, fmt.Errorf("kubectl exited before forwarding (%v); stdout:\n%s\nstderr:\n%s", r.waitErr, r.stdout, r.stderr)
	case <-time.After(60 * time.Second):
		return "", r, fmt.Errorf("kubectl did not print a Forwarding line within 60s; stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
}

// kill stops kubectl and waits for it to exit.
func (r *kubectlRun) kill() {
	_ = r.cmd.Process.Kill()
	<-r.exited
}

// wait waits at most d for kubectl to exit by itself.
func (r *kubectlRun) wait(d time.Duration) bool {
	select {
	case <-r.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// kubectlDial runs `kubectl port-forward pod/NAME :PORT` with extra flags and
// returns a connection to the local port; both end with the test.
func (e *env) kubectlDial(t *testing.T, bin, pod string, port int, flags ...string) net.Conn {
	t.Helper()
	addr, run, err := e.kubectlPortForward(t, bin, pod, port, flags...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(run.kill)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
