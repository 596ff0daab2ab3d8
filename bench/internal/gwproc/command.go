package gwproc

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// StartCommand runs bin with args as a measured child like a gateway (CPU,
// system calls and memory from /proc; no admin listener, so no allocation
// figures), with its output in dir/name.log, and waits for ready, which gets
// the child's exit channel. Addr is set to 127.0.0.1:port (0: no address).
// pin is as Options.Pin. The benchmark runs etcd and the kube-apiserver so.
func StartCommand(name, bin, dir string, port int, args []string, pin func(pid int) error, ready func(exited <-chan struct{}) error) (*Proc, error) {
	g := &Proc{Name: name, logPath: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	if port != 0 {
		g.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	logf, err := os.Create(g.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child keeps its own descriptor
	g.cmd = exec.Command(bin, args...)
	return g, g.start(logf, pin, func() error { return ready(g.exited) })
}
