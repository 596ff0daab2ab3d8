package controlplane

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is a child process of the test binary whose output goes to a
// log file in the control plane's temp dir.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once Wait has returned
	waitErr error
}

// startProcess runs bin with args. Pdeathsig kills the child if the test
// binary dies without stopping it, so no etcd or kube-apiserver outlives a
// crashed or killed test run.
func startProcess(name, logPath, bin string, args ...string) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// stop sends SIGTERM, waits up to 20s, then SIGKILLs; it returns an error
// only when the process could not be reaped.
func (p *process) stop() error {
	if p == nil {
		return nil
	}
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(20 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// running reports an error when the process has already exited.
func (p *process) running() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited early (%v); last log lines:\n%s", p.name, p.waitErr, p.tail(30))
	default:
		return nil
	}
}

// tail returns the last n lines of the process's log.
func (p *process) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func (p *process) dumpLog(w io.Writer, n int) {
	fmt.Fprintf(w, "---- %s log (last %d lines of %s) ----\n%s\n", p.name, n, p.logPath, p.tail(n))
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// The servers started on them are not Go listeners we could hand over, so
// there is a short race with other processes; startControlPlane retries.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitFor polls check every 200ms until it returns nil, p exits or d passes.
func waitFor(p *process, d time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(d)
	var last error
	for {
		if err := p.running(); err != nil {
			return err
		}
		if last = check(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v; last log lines:\n%s", what, d, last, p.tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
