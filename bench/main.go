// Command bench measures pfgateway's data path against the TLS floor and
// the direct client→kubelet path, all in one run:
//
//	go run ./bench [-size 1GiB] [-repeat 3] [-modes spdy,websocket] [-out BENCHMARKS-table.md]
//
// See README.md in this directory for what each figure means.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

const (
	modeSPDY      = "spdy"
	modeWebSocket = "websocket"
	dirDownload   = "download"
	dirUpload     = "upload"
	pathDirect    = "direct"
	pathGateway   = "gateway"
	pathRelay     = "relay" // the reference relay, bench/internal/refrelay
	podName       = "bench"
)

type config struct {
	size, floorSize, warmup int64
	repeat                  int
	modes                   []string
	out                     string
	gateways                []gatewaySpec // empty: build ./cmd/pfgateway
	profileDir              string
	quiet                   quietGate
	pin                     bool
	relay                   bool
}

// gatewaySpec names a gateway binary to measure.
type gatewaySpec struct{ Name, Bin string }

// gatewayFlag collects -gateway-bin NAME=PATH (or PATH) flags.
type gatewayFlag struct{ specs *[]gatewaySpec }

func (f gatewayFlag) String() string { return "" }

func (f gatewayFlag) Set(v string) error {
	name, bin, ok := strings.Cut(v, "=")
	if !ok {
		name, bin = pathGateway, v
	}
	if name == "" || bin == "" || name == pathDirect || name == pathRelay || strings.ContainsAny(name, "/ ") {
		return fmt.Errorf("want NAME=PATH with a NAME other than %q or %q and no spaces or slashes", pathDirect, pathRelay)
	}
	for _, g := range *f.specs {
		if g.Name == name {
			return fmt.Errorf("gateway %q named twice", name)
		}
	}
	*f.specs = append(*f.specs, gatewaySpec{name, bin})
	return nil
}

func main() {
	var c config
	var size, floorSize, warmup, modes string
	flag.StringVar(&size, "size", "1GiB", "bytes per transfer (each direction, each path, each mode)")
	flag.StringVar(&floorSize, "floor-size", "2GiB", "bytes moved by each TLS floor measurement")
	flag.StringVar(&warmup, "warmup", "64MiB", "bytes of the unmeasured warm-up transfers on every path")
	flag.IntVar(&c.repeat, "repeat", 3, "runs of every measurement; figures are medians")
	flag.StringVar(&modes, "modes", "spdy,websocket", "comma-separated: spdy, websocket")
	flag.StringVar(&c.out, "out", "", "also write the results as markdown to this file")
	flag.Var(gatewayFlag{&c.gateways}, "gateway-bin", "measure this prebuilt gateway binary instead of building ./cmd/pfgateway; repeat as NAME=PATH to compare several in one run")
	flag.StringVar(&c.profileDir, "cpuprofile-dir", "", "run the gateway under a CPU profiler (bench/internal/gwprof) and write one profile per gateway transfer here; with -gateway-bin, the binaries must be built from bench/internal/gwprof")
	flag.Float64Var(&c.quiet.Below, "quiet-below", 0.3, "before each measurement, wait until other processes use fewer cores than this (0: do not wait)")
	flag.DurationVar(&c.quiet.MaxWait, "quiet-wait", 2*time.Minute, "longest wait for a quiet machine before measuring anyway")
	flag.BoolVar(&c.pin, "pin", false, "run this process (client, kubelet, pod, floor) on CPU 0 and each gateway on CPU 1, GOMAXPROCS 1 each, so a gateway has a core of its own")
	flag.BoolVar(&c.relay, "relay", true, "also measure the reference relay (bench/internal/refrelay), the simplest TLS-terminating relay, as the path \""+pathRelay+"\"")
	flag.Parse()
	var err error
	if c.size, err = parseSize(size); err == nil {
		if c.floorSize, err = parseSize(floorSize); err == nil {
			c.warmup, err = parseSize(warmup)
		}
	}
	if err == nil && c.repeat < 1 {
		err = errors.New("-repeat must be at least 1")
	}
	for _, m := range strings.Split(modes, ",") {
		m = strings.TrimSpace(m)
		switch {
		case m != modeSPDY && m != modeWebSocket:
			err = errors.Join(err, fmt.Errorf("-modes: unknown mode %q (want spdy, websocket)", m))
		case slices.Contains(c.modes, m):
			err = errors.Join(err, fmt.Errorf("-modes: %s named twice", m))
		}
		c.modes = append(c.modes, m)
	}
	if err == nil && c.pin && runtime.NumCPU() < 2 {
		err = errors.New("-pin needs at least 2 CPUs")
	}
	if err == nil && flag.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		cleanup()
		os.Exit(1)
	}
}

var (
	cleanupMu  sync.Mutex
	cleanupFns []func()
)

// atCleanup registers f to run at the end, on error or on a signal, latest first.
func atCleanup(f func()) {
	cleanupMu.Lock()
	cleanupFns = append(cleanupFns, f)
	cleanupMu.Unlock()
}

func cleanup() {
	cleanupMu.Lock()
	fns := cleanupFns
	cleanupFns = nil
	cleanupMu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// target is a path to the pod: the kubelet itself, or a gateway.
type target struct {
	url *url.URL
	cfg *rest.Config
	gw  *gatewayProc // nil for the direct path
}

func run(c config) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintln(os.Stderr, "bench: interrupted by", s)
		cleanup()
		os.Exit(130)
	}()
	r := &results{
		Machine: describeMachine(), Command: commandLine(), Size: c.size, FloorSize: c.floorSize,
		Repeat: c.repeat, Modes: c.modes, Samples: map[caseKey][]sample{}, Started: time.Now(), Profiles: c.profileDir, Pinned: c.pin,
	}
	if c.pin {
		runtime.GOMAXPROCS(1)
		if err := pinThreads("self", 0); err != nil {
			return err
		}
	}
	paths, targets, err := setUp(&c, r)
	if err != nil {
		return err
	}
	// Warm-up, unmeasured but verified, then the measured repeats.
	for _, mode := range c.modes {
		for _, path := range paths {
			err := session(targets[path], mode, func(local string) error {
				for _, dir := range []string{dirDownload, dirUpload} {
					if _, err := transfer(local, dir, c.warmup, true); err != nil {
						return fmt.Errorf("warm-up %s %s %s: %w", mode, path, dir, err)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	logf("warm-up done: every path carried %s each way, verified byte for byte", sizeString(c.warmup))
	for rep := range c.repeat {
		if err := runOnce(&c, r, rep, paths, targets); err != nil {
			return err
		}
	}
	for i := range r.Gateways {
		gw := targets[r.Gateways[i].Name].gw
		if r.Gateways[i].RSSEnd, r.Gateways[i].RSSPeak, err = gw.Memory(); err != nil {
			return err
		}
		r.Gateways[i].TotalCPU = gw.Stop()
	}
	r.Elapsed = time.Since(r.Started)
	r.Quiet = c.quiet

	fmt.Println()
	r.writeText(os.Stdout)
	if c.out != "" {
		f, err := os.Create(c.out)
		if err != nil {
			return err
		}
		r.writeMarkdown(f)
		fmt.Fprintf(f, "\n%s\n", methodNote)
		if err := f.Close(); err != nil {
			return err
		}
		logf("wrote %s", c.out)
	}
	cleanup()
	return nil
}

// setUp starts the dev cluster, the pod and the gateways, and returns the
// paths to measure: "direct" first, then each gateway by name, then the
// reference relay (unless -relay=false).
func setUp(c *config, r *results) ([]string, map[string]target, error) {
	dir, err := os.MkdirTemp("", "pfgateway-bench-")
	if err != nil {
		return nil, nil, err
	}
	atCleanup(func() { _ = os.RemoveAll(dir) })
	if len(c.gateways) == 0 {
		logf("building %s", gatewayPkg)
		bin, err := buildGateway(dir, c.profileDir != "")
		if err != nil {
			return nil, nil, err
		}
		c.gateways = []gatewaySpec{{pathGateway, bin}}
	}
	relayBin := ""
	if c.relay {
		logf("building %s", relayPkg)
		if relayBin, err = goBuild(dir, relayPkg, "refrelay"); err != nil {
			return nil, nil, err
		}
	}
	cl, err := devcluster.Start(devcluster.Options{Dir: dir})
	if err != nil {
		return nil, nil, fmt.Errorf("dev cluster: %w", err)
	}
	atCleanup(cl.Close)
	pod, err := startPodServer()
	if err != nil {
		return nil, nil, err
	}
	atCleanup(pod.Close)
	if err := cl.AddPod(devcluster.Pod{Name: podName, Ports: map[int32]string{podPort: pod.Addr()}}); err != nil {
		return nil, nil, err
	}
	user, err := cl.CA.Issue(pki.IssueOptions{CommonName: "bench-user", Organization: []string{"bench"}, Usage: pki.Client})
	if err != nil {
		return nil, nil, err
	}
	restCfg := func(host string) *rest.Config {
		return &rest.Config{Host: "https://" + host, TLSClientConfig: rest.TLSClientConfig{CAData: cl.CA.CertPEM, CertData: user.CertPEM, KeyData: user.KeyPEM}}
	}
	kubelet := cl.Kubelet.Addr()
	targets := map[string]target{
		pathDirect: {&url.URL{Scheme: "https", Host: kubelet, Path: "/portForward/default/" + podName}, restCfg(kubelet), nil},
	}
	paths := []string{pathDirect}
	r.KubeletTLS = probeTLS(kubelet, cl, user)

	for _, spec := range c.gateways {
		gw, err := startGateway(spec.Name, spec.Bin, dir, c.profileDir, c.pin, cl.Files)
		if err != nil {
			return nil, nil, err
		}
		atCleanup(func() { gw.Stop() })
		info := gatewayInfo{Name: spec.Name, TLS: probeTLS(gw.Addr, cl, user)}
		if info.RSSIdle, _, err = gw.Memory(); err != nil {
			return nil, nil, err
		}
		logf("gateway %s: pid %d ready at %s, VmRSS %s", spec.Name, gw.Pid(), gw.Addr, bytesString(info.RSSIdle))
		r.Gateways = append(r.Gateways, info)
		targets[spec.Name] = target{&url.URL{Scheme: "https", Host: gw.Addr, Path: "/api/v1/namespaces/default/pods/" + podName + "/portforward"}, restCfg(gw.Addr), gw}
		paths = append(paths, spec.Name)
	}
	if c.relay {
		rl, err := startRelay(pathRelay, relayBin, dir, c.pin, cl.Files, kubelet)
		if err != nil {
			return nil, nil, err
		}
		atCleanup(func() { rl.Stop() })
		info := gatewayInfo{Name: pathRelay, TLS: probeTLS(rl.Addr, cl, user)}
		if info.RSSIdle, _, err = rl.Memory(); err != nil {
			return nil, nil, err
		}
		logf("reference relay: pid %d listening at %s, VmRSS %s", rl.Pid(), rl.Addr, bytesString(info.RSSIdle))
		r.Gateways = append(r.Gateways, info)
		targets[pathRelay] = target{&url.URL{Scheme: "https", Host: rl.Addr, Path: "/api/v1/namespaces/default/pods/" + podName + "/portforward"}, restCfg(rl.Addr), rl}
		paths = append(paths, pathRelay)
	}
	return paths, targets, nil
}

// runOnce is one repeat: the floor, then for every mode every path, in an
// order rotated by the repeat, a download and an upload.
func runOnce(c *config, r *results, rep int, paths []string, targets map[string]target) error {
	runtime.GC()
	if err := c.quiet.wait("the floor"); err != nil {
		return err
	}
	f, err := measureFloor(c.floorSize)
	if err != nil {
		return err
	}
	logf("run %d/%d floor %.3f CPU-s/GiB, %.0f MiB/s, %.0f reads + %.0f writes per MiB (%s; other processes %.2f cores)",
		rep+1, c.repeat, f.CPUPerGiB, f.MiBps, f.Reads, f.Writes, f.Suite, f.OtherCores)
	r.Floor = append(r.Floor, f)
	for _, mode := range c.modes {
		order := append(slices.Clone(paths[rep%len(paths):]), paths[:rep%len(paths)]...)
		for _, path := range order {
			t := targets[path]
			err := session(t, mode, func(local string) error {
				for _, dir := range []string{dirDownload, dirUpload} {
					if err := c.quiet.wait(mode + " " + path + " " + dir); err != nil {
						return err
					}
					s, err := measure(t.gw, local, dir, c.size, fmt.Sprintf("%s-%s-%s-%d", path, mode, dir, rep+1))
					if err != nil {
						return fmt.Errorf("%s %s %s: %w", mode, path, dir, err)
					}
					k := caseKey{mode, dir, path}
					r.Samples[k] = append(r.Samples[k], s)
					logf("run %d/%d %-9s %-8s %-8s %6.1f MiB/s  gateway %s CPU-s/GiB %s  bench %.2f CPU-s/GiB  others %.2f cores",
						rep+1, c.repeat, mode, path, dir, s.MiBps, fmtCPU(s.GatewayCPU), fmtSyscalls(s), s.BenchCPU, s.OtherCores)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// session runs fn with a port-forward session open to t.
func session(t target, mode string, fn func(local string) error) error {
	s, err := openForward(t.url, t.cfg, mode)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s.Local)
}

// probeTLS reports the TLS version and suite client-go's defaults
// negotiate with addr.
func probeTLS(addr string, cl *devcluster.Cluster, user *pki.KeyPair) string {
	cfg := devcluster.ClientTLS(cl.CA, user)
	cfg.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer c.Close()
	st := c.ConnectionState()
	return tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
}

func commandLine() string {
	return strings.TrimSpace("go run ./bench " + strings.Join(os.Args[1:], " "))
}

func fmtSyscalls(s sample) string {
	if math.IsNaN(s.GwReads) {
		return ""
	}
	return fmt.Sprintf("(%.0f reads + %.0f writes per MiB)", s.GwReads, s.GwWrites)
}

func fmtCPU(v float64) string {
	if math.IsNaN(v) {
		return "   –"
	}
	return fmt.Sprintf("%.2f", v)
}
