// Package gwproc runs the gateway (or another relay) as a child process
// against a dev cluster's files and reads its figures from /proc: CPU,
// system calls, RSS, open descriptors. The benchmark (bench) and the soak
// command (bench/soak) share it.
package gwproc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pfgateway/pfgateway/devcluster"
)

const (
	// GatewayPkg is the gateway's command.
	GatewayPkg = "github.com/pfgateway/pfgateway/cmd/pfgateway"
	// ProfilerPkg is the gateway wrapped with a CPU profiler toggled by
	// SIGUSR1/SIGUSR2 (see bench/internal/gwprof); the gateway code is the same.
	ProfilerPkg = "github.com/pfgateway/pfgateway/bench/internal/gwprof"
	// RelayPkg is the reference relay (see bench/internal/refrelay): a
	// yardstick, measured like a gateway.
	RelayPkg     = "github.com/pfgateway/pfgateway/bench/internal/refrelay"
	readyTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
)

// BuildGateway compiles the gateway (or its profiling wrapper) into dir.
func BuildGateway(dir string, profiling bool) (string, error) {
	pkg := GatewayPkg
	if profiling {
		pkg = ProfilerPkg
	}
	return GoBuild(dir, pkg, "pfgateway")
}

// GoBuild compiles pkg into dir/name.
func GoBuild(dir, pkg, name string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w", pkg, err)
	}
	return out, nil
}

// Proc is the gateway (or the reference relay) running as a child process.
type Proc struct {
	Name       string
	cmd        *exec.Cmd
	Addr       string // client-facing host:port
	AdminAddr  string
	logPath    string
	profileDir string // where finished profiles go
	profileTmp string // where the child writes them
	profileSeq int
	exited     chan struct{}
	waitErr    error
}

// Options say how to start a gateway child.
type Options struct {
	Name string // for logs and the log file's name
	Bin  string // the gateway binary (see BuildGateway)
	Dir  string // its log file goes here
	// ProfileDir, if set, receives CPU profiles (ProfileStop); Bin must then
	// be the profiling wrapper.
	ProfileDir string
	Files      devcluster.Files
	// Extra flags after the ones that point the gateway at Files.
	Extra []string
	// Pin, if set, is called with the child's pid once it started and again
	// once it is ready (to pin its threads), and the child runs with
	// GOMAXPROCS=1.
	Pin func(pid int) error
}

// StartGateway runs o.Bin against the dev cluster's files, with o.Extra
// flags, and waits for /readyz.
func StartGateway(o Options) (*Proc, error) {
	name, dir, profileDir, f := o.Name, o.Dir, o.ProfileDir, o.Files
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	admin, err := FreePort()
	if err != nil {
		return nil, err
	}
	g := &Proc{
		Name:       name,
		Addr:       net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		AdminAddr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(admin)),
		logPath:    filepath.Join(dir, name+".log"),
		profileDir: profileDir,
		exited:     make(chan struct{}),
	}
	if profileDir != "" {
		g.profileTmp = filepath.Join(dir, name+"-profiles")
		if err := os.MkdirAll(g.profileTmp, 0o755); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			return nil, err
		}
	}
	logf, err := os.Create(g.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child keeps its own descriptor
	args := []string{
		"--secure-port", strconv.Itoa(port),
		"--bind-address", "127.0.0.1",
		"--tls-cert-file", f.ServingCert,
		"--tls-private-key-file", f.ServingKey,
		"--client-ca-file", f.CA,
		"--kubeconfig", f.GatewayKubeconfig,
		"--kubelet-client-certificate", f.KubeletClientCert,
		"--kubelet-client-key", f.KubeletClientKey,
		"--kubelet-certificate-authority", f.CA,
		"--metrics-bind-address", g.AdminAddr,
		"--shutdown-grace-period", "2s",
	}
	g.cmd = exec.Command(o.Bin, append(args, o.Extra...)...)
	return g, g.start(logf, o.Pin, g.waitReady)
}

// StartRelay runs the reference relay (bin, built from RelayPkg) in front of
// the kubelet with the gateway's serving and kubelet-client certificates, and
// waits until it accepts connections. pin is as Options.Pin.
func StartRelay(name, bin, dir string, pin func(pid int) error, f devcluster.Files, kubelet string) (*Proc, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	g := &Proc{
		Name:    name,
		Addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		logPath: filepath.Join(dir, name+".log"),
		exited:  make(chan struct{}),
	}
	logf, err := os.Create(g.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	g.cmd = exec.Command(bin, "-listen", g.Addr, "-cert", f.ServingCert, "-key", f.ServingKey,
		"-kubelet", kubelet, "-kubelet-cert", f.KubeletClientCert, "-kubelet-key", f.KubeletClientKey, "-ca", f.CA)
	return g, g.start(logf, pin, func() error {
		for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			select {
			case <-g.exited:
				return fmt.Errorf("the relay exited before it was ready: %v", g.waitErr)
			default:
			}
			if c, err := net.Dial("tcp", g.Addr); err == nil {
				c.Close()
				return nil
			}
		}
		return fmt.Errorf("the relay was not listening within %s", readyTimeout)
	})
}

// start runs g.cmd with its output in logf, pinned with pin, and waits for
// ready.
func (g *Proc) start(logf *os.File, pin func(pid int) error, ready func() error) error {
	name := g.Name
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	// The child must not outlive the benchmark, whatever ends it.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	g.cmd.Env = os.Environ()
	if g.profileDir != "" {
		g.cmd.Env = append(g.cmd.Env, "PFGW_PROFILE_DIR="+g.profileTmp)
	}
	if pin != nil {
		g.cmd.Env = append(g.cmd.Env, "GOMAXPROCS=1")
	}
	if err := g.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { g.waitErr = g.cmd.Wait(); close(g.exited) }()
	if pin != nil {
		if err := pin(g.Pid()); err != nil {
			g.Stop()
			return err
		}
	}
	if err := ready(); err != nil {
		g.Stop()
		return fmt.Errorf("%s: %w\n--- its log (tail) ---\n%s", name, err, g.LogTail(20))
	}
	if pin != nil { // and any thread started until now
		if err := pin(g.Pid()); err != nil {
			g.Stop()
			return err
		}
	}
	return nil
}

func (g *Proc) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + g.AdminAddr + "/readyz"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-g.exited:
			return fmt.Errorf("the gateway exited before it was ready: %v", g.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("the gateway was not ready within %s", readyTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Pid is the child's process id.
func (g *Proc) Pid() int { return g.cmd.Process.Pid }

// CPU returns the child's user+system CPU seconds from /proc/PID/stat.
func (g *Proc) CPU() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", g.Pid()))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/PID/stat format")
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	// fields[0] is field 3 (state): utime is field 14, stime field 15.
	ut, err1 := strconv.ParseUint(fields[11], 10, 64)
	st, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return float64(ut+st) / float64(ClockTicks()), nil
}

// Syscalls returns the child's read and write system call counts
// (syscr, syscw in /proc/PID/io).
func (g *Proc) Syscalls() (reads, writes int64, err error) {
	return ProcSyscalls(strconv.Itoa(g.Pid()))
}

// ProcSyscalls reads syscr and syscw of /proc/<pid>/io ("self" for this process).
func ProcSyscalls(pid string) (reads, writes int64, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/io")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "syscr" && k != "syscw") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", k, err)
		}
		if k == "syscr" {
			reads = n
		} else {
			writes = n
		}
	}
	return reads, writes, nil
}

// FDs is the number of the child's open file descriptors (/proc/PID/fd).
func (g *Proc) FDs() (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", g.Pid()))
	return len(ents), err
}

// Exited is closed when the child has exited.
func (g *Proc) Exited() <-chan struct{} { return g.exited }

// Memory returns VmRSS and VmHWM (peak RSS) of the child, in bytes.
func (g *Proc) Memory() (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.Pid()))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", k, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}

// ProfileStart starts a CPU profile in the wrapped gateway.
func (g *Proc) ProfileStart() error {
	if g.profileDir == "" {
		return nil
	}
	return g.cmd.Process.Signal(syscall.SIGUSR1)
}

// ProfileStop stops the profile and saves it as name.pprof in the profile directory.
func (g *Proc) ProfileStop(name string) error {
	if g.profileDir == "" {
		return nil
	}
	if err := g.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		return err
	}
	g.profileSeq++
	written := filepath.Join(g.profileTmp, fmt.Sprintf("profile-%d.pprof", g.profileSeq))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(written); err == nil {
			return os.Rename(written, filepath.Join(g.profileDir, name+".pprof"))
		}
	}
	return fmt.Errorf("the gateway wrote no profile %s", written)
}

// Stop sends SIGTERM, waits, kills after stopTimeout, and returns the
// child's total CPU time from its rusage (-1 if unknown).
func (g *Proc) Stop() float64 {
	select {
	case <-g.exited:
	default:
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exited:
		case <-time.After(stopTimeout):
			_ = g.cmd.Process.Kill()
			<-g.exited
		}
	}
	if ps := g.cmd.ProcessState; ps != nil {
		return ps.UserTime().Seconds() + ps.SystemTime().Seconds()
	}
	return -1
}

// LogTail returns the last n lines of the gateway's log.
func (g *Proc) LogTail(n int) string {
	b, _ := os.ReadFile(g.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FreePort is a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ClockTicks is sysconf(_SC_CLK_TCK), read from the auxiliary vector
// (AT_CLKTCK) without cgo; Linux uses 100.
func ClockTicks() int64 {
	const atClkTck = 17
	if b, err := os.ReadFile("/proc/self/auxv"); err == nil {
		for ; len(b) >= 16; b = b[16:] {
			if binary.NativeEndian.Uint64(b) == atClkTck {
				if v := int64(binary.NativeEndian.Uint64(b[8:])); v > 0 {
					return v
				}
			}
		}
	}
	return 100
}

// Signal sends sig to the child (SIGHUP: gwprof writes heap and goroutine
// profiles into $PFGW_PROFILE_DIR).
func (g *Proc) Signal(sig os.Signal) error { return g.cmd.Process.Signal(sig) }
