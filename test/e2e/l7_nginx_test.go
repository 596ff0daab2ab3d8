package e2e

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pfgateway/pfgateway/devcluster/pki"
)

// nginx in front of the gateway (docs/nginx.md): the tests run the
// documented configuration itself, extracted from the document, with only
// addresses, file paths and timeouts substituted.

// nginxDoc is the document whose ```nginx block is the configuration.
const nginxDoc = "../../docs/nginx.md"

// nginxTimeout replaces the document's 1h proxy timeouts: short enough that
// an idle test shows them in force, well above client-go's 5 s SPDY ping
// period so a ping late on a loaded machine does not end a SPDY session.
const nginxTimeout = 12 * time.Second

var nginxBlock = regexp.MustCompile("(?s)```nginx\n(.*?)```")

// nginxBinary finds Debian's nginx (in /usr/sbin, often not on a user's
// PATH), or skips; with CI=true a missing nginx fails instead, since .ci/run
// installs it.
func nginxBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
			return "/usr/sbin/nginx"
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("nginx is not installed (.ci/run installs Debian's nginx): %v", err)
		}
		t.Skipf("nginx not installed (apt-get install nginx): %v", err)
	}
	return p
}

// documentedNginxConf returns the one ```nginx block of docs/nginx.md.
func documentedNginxConf(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(nginxDoc)
	if err != nil {
		t.Fatal(err)
	}
	m := nginxBlock.FindAllStringSubmatch(string(b), -1)
	if len(m) != 1 {
		t.Fatalf("%s has %d nginx blocks, want exactly 1", nginxDoc, len(m))
	}
	return m[0][1]
}

// substitute replaces each old with its new in order, failing when an old
// does not occur exactly want times: a changed document must not silently
// leave a production path or timeout in the tested configuration.
func substitute(t *testing.T, s string, subs []nginxSub) string {
	t.Helper()
	for _, r := range subs {
		if n := strings.Count(s, r.old); n != r.count {
			t.Fatalf("the documented nginx config has %q %d times, want %d", r.old, n, r.count)
		}
		s = strings.ReplaceAll(s, r.old, r.new)
	}
	return s
}

type nginxSub struct {
	old, new string
	count    int
}

// nginxProxy is a running nginx.
type nginxProxy struct {
	addr   string // 127.0.0.1:port, TLS with a certificate from the test CA
	dir    string
	exited chan struct{}
	errLog string
}

// errorLog returns nginx's error log so far.
func (n *nginxProxy) errorLog() string {
	b, _ := os.ReadFile(n.errLog)
	return string(b)
}

// startNginx runs nginx (no daemon, its own prefix, pid file and logs in a
// temporary directory, so no root needed) with the documented configuration
// in front of e's gateway. It is stopped at the end of the test.
func startNginx(t *testing.T, e *env) *nginxProxy {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	kp, err := e.cluster.CA.Issue(pki.Loopback("nginx"))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := kp.WriteFiles(dir, "nginx")
	if err != nil {
		t.Fatal(err)
	}
	// nginx cannot listen on port 0 and report it: pick a free port, and
	// try again should another process take it first.
	var lastErr error
	for range 3 {
		port := freePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		conf := substitute(t, documentedNginxConf(t), []nginxSub{
			{"worker_processes auto;", "worker_processes 1;", 1},
			{"pid /run/nginx.pid;", "pid " + dir + "/nginx.pid;", 1},
			{"/var/log/nginx/", dir + "/", 2},
			// info shows why nginx closes a tunnel ("timed out").
			{"error.log warn;", "error.log info;", 1},
			// The package's compiled-in temp paths are under /var/lib/nginx.
			{"    server_tokens off;\n", "    server_tokens off;\n" + tempPaths(dir), 1},
			{"server pfgateway.internal:8443;", "server " + e.gw.Addr() + ";", 1},
			{"proxy_ssl_name                pfgateway.internal;", "proxy_ssl_name                localhost;", 1},
			{"listen 443 ssl;", "listen " + addr + " ssl;", 1},
			{"/etc/nginx/tls/nginx.crt", cert, 1},
			{"/etc/nginx/tls/nginx.key", key, 1},
			{"/etc/nginx/tls/pfgateway-ca.crt", e.cluster.Files.CA, 1},
			{" 1h;", fmt.Sprintf(" %ds;", int(nginxTimeout.Seconds())), 3},
		})
		if os.Geteuid() == 0 {
			// As root nginx would run its worker as nobody, which cannot
			// enter the test's 0700 temporary directory.
			conf = "user root;\n" + conf
		}
		confPath := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		n := &nginxProxy{addr: addr, dir: dir, exited: make(chan struct{}), errLog: filepath.Join(dir, "error.log")}
		cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", n.errLog, "-g", "daemon off;")
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting nginx: %v", err)
		}
		var waitErr error
		go func() { waitErr = cmd.Wait(); close(n.exited) }()
		if lastErr = n.waitListening(e); lastErr == nil {
			t.Cleanup(func() { n.stop(t, cmd) })
			return n
		}
		_ = cmd.Process.Kill()
		<-n.exited
		lastErr = fmt.Errorf("%w (exit: %v)\noutput: %s\nerror log: %s", lastErr, waitErr, out, n.errorLog())
		if !strings.Contains(lastErr.Error(), "Address already in use") {
			break
		}
	}
	t.Fatalf("nginx did not start: %v", lastErr)
	return nil
}

func tempPaths(dir string) string {
	var b strings.Builder
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "    %s_temp_path %s/%s;\n", d, dir, d)
	}
	return b.String()
}

// waitListening waits (at most 20 s) for a TLS handshake with nginx to
// succeed, or for nginx to exit.
func (n *nginxProxy) waitListening(e *env) error {
	deadline := time.Now().Add(20 * time.Second)
	cfg := &tls.Config{RootCAs: e.cluster.CA.Pool(), ServerName: "127.0.0.1"}
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", n.addr, cfg)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-n.exited:
			return errors.New("nginx exited")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no TLS handshake with nginx at %s after 20s: %v", n.addr, err)
		}
	}
}

// stop asks nginx for a fast shutdown and waits; its workers exit with it.
func (n *nginxProxy) stop(t *testing.T, cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("nginx did not exit within 10s of SIGTERM; killing it")
		_ = cmd.Process.Kill()
		<-n.exited
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
