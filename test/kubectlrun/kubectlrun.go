// Package kubectlrun runs the machine image's real kubectl binaries for
// the end-to-end tiers (test/e2e, test/controlplane): one binary per minor,
// a private HOME and cache per run, and `kubectl port-forward` started and
// read until its "Forwarding from" line.
package kubectlrun

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

// Dir holds the kubectl binaries of this machine image, one per minor.
const Dir = "/usr/lib/google-cloud-sdk/bin"

// Dispatcher chooses one of those binaries by the server's /version.
const Dispatcher = "/usr/bin/kubectl"

// Binary returns the kubectl 1.minor binary or skips the test.
func Binary(t testing.TB, minor int) string {
	t.Helper()
	p := fmt.Sprintf("%s/kubectl.1.%d", Dir, minor)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("kubectl 1.%d not installed at %s: %v", minor, p, err)
	}
	return p
}

// Newest returns the newest kubectl 1.27–1.33 present, or skips the test.
func Newest(t testing.TB) string {
	t.Helper()
	for minor := 33; minor >= 27; minor-- {
		p := fmt.Sprintf("%s/kubectl.1.%d", Dir, minor)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("no kubectl 1.27–1.33 under %s", Dir)
	return ""
}

// Command builds `kubectl --kubeconfig K --cache-dir … --request-timeout
// 60s ARGS…` with a private HOME and cache directory.
func Command(t testing.TB, ctx context.Context, bin, kubeconfig string, args ...string) *exec.Cmd {
	dir := t.TempDir()
	args = append([]string{"--kubeconfig", kubeconfig, "--cache-dir", dir + "/cache", "--request-timeout", "60s"}, args...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	return cmd
}

// SyncBuffer collects a process's output for assertions and failure
// messages.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Run is a running `kubectl port-forward`.
type Run struct {
	cmd            *exec.Cmd
	Stdout, Stderr *SyncBuffer
	Exited         chan struct{} // closed when the process has exited
	WaitErr        error         // set before Exited is closed
}

var forwardingRE = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)`)

// PortForward starts `kubectl FLAGS… port-forward pod/POD :PORT` and waits
// at most 60 s for its "Forwarding from 127.0.0.1:N -> PORT" line. It
// returns the local address, or the run and an error when kubectl exits
// first. The process is killed at the end of the test.
func PortForward(t testing.TB, bin, kubeconfig, pod string, port int, flags ...string) (string, *Run, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // hard bound on the process
	args := append(append([]string{}, flags...), "port-forward", "pod/"+pod, ":"+strconv.Itoa(port))
	cmd := Command(t, ctx, bin, kubeconfig, args...)
	r := &Run{cmd: cmd, Stdout: &SyncBuffer{}, Stderr: &SyncBuffer{}, Exited: make(chan struct{})}
	cmd.Stderr = r.Stderr
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
		<-r.Exited
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
			_, _ = r.Stdout.Write([]byte(line + "\n"))
			if m := forwardingRE.FindStringSubmatch(line); m != nil && !sent && m[2] == strconv.Itoa(port) {
				local <- "127.0.0.1:" + m[1]
				sent = true
			}
		}
		r.WaitErr = cmd.Wait()
		close(r.Exited)
	}()
	select {
	case addr := <-local:
		return addr, r, nil
	case <-r.Exited:
		return "", r, fmt.Errorf("kubectl exited before forwarding (%v); stdout:\n%s\nstderr:\n%s", r.WaitErr, r.Stdout, r.Stderr)
	case <-time.After(60 * time.Second):
		return "", r, fmt.Errorf("kubectl did not print a Forwarding line within 60s; stdout:\n%s\nstderr:\n%s", r.Stdout, r.Stderr)
	}
}

// Kill stops kubectl and waits for it to exit.
func (r *Run) Kill() {
	_ = r.cmd.Process.Kill()
	<-r.Exited
}

// Wait waits at most d for kubectl to exit by itself.
func (r *Run) Wait(d time.Duration) bool {
	select {
	case <-r.Exited:
		return true
	case <-time.After(d):
		return false
	}
}
