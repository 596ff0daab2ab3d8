// Command bench measures pfgateway's data path against the TLS floor and
// the direct client→kubelet path, all in one run: throughput, CPU and
// allocations per byte, and new-connection latency, for each -splice
// variant of the gateway:
//
//	go run ./bench [-size 1GiB] [-repeat 3] [-modes spdy,websocket] [-splice opaque,streams,streams-early] [-kubelet-rtt 1ms] [-out BENCHMARKS-table.md]
//
// See README.md in this directory for what each figure means.
package main

import (
	"crypto/tls"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

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

func main() {
	c, err := parseFlags()
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
	cleanupMu   sync.Mutex
	cleanupFns  []func()
	cleanupOnce sync.Once
)

// atCleanup registers f to run at the end, on error or on a signal, latest first.
func atCleanup(f func()) {
	cleanupMu.Lock()
	cleanupFns = append(cleanupFns, f)
	cleanupMu.Unlock()
}

// cleanup runs once; a second caller (the signal handler and a transfer
// that the signal broke) waits for the first to finish before it exits.
func cleanup() {
	cleanupOnce.Do(func() {
		cleanupMu.Lock()
		fns := cleanupFns
		cleanupFns = nil
		cleanupMu.Unlock()
		for i := len(fns) - 1; i >= 0; i-- {
			fns[i]()
		}
	})
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
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
		Latency:         latencyResults{Samples: map[latencyKey][]time.Duration{}},
		ParallelSamples: map[caseKey][]sample{},
	}
	if c.parallel > 1 {
		r.Parallel = c.parallel
	}
	if c.pin {
		runtime.GOMAXPROCS(1)
		if err := pinThreads("self", 0); err != nil {
			return err
		}
	}
	e, err := setUp(&c, r)
	if err != nil {
		return err
	}
	paths, targets := e.paths, e.targets
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
	if err := measureLatency(&c, r, e); err != nil {
		return err
	}
	if err := measureSetup(&c, r, e); err != nil {
		return err
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
		if cp := chartPath(c); cp != "" {
			fmt.Fprintf(f, "![throughput, CPU-s/GiB and latency per path](%s)\n\n", filepath.Base(cp))
		}
		r.writeMarkdown(f)
		fmt.Fprintf(f, "\n%s\n", methodNote)
		if err := f.Close(); err != nil {
			return err
		}
		logf("wrote %s", c.out)
	}
	if cp := chartPath(c); cp != "" {
		if err := r.writeChart(cp); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		logf("wrote %s", cp)
	}
	cleanup()
	return nil
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
					if c.parallel > 1 {
						if s, err = measureParallel(t.gw, local, dir, c.size, c.parallel); err != nil {
							return fmt.Errorf("%s %s %s ×%d: %w", mode, path, dir, c.parallel, err)
						}
						r.ParallelSamples[k] = append(r.ParallelSamples[k], s)
						logf("run %d/%d %-9s %-8s %-8s %6.1f MiB/s with %d connections at once, gateway %s CPU-s/GiB",
							rep+1, c.repeat, mode, path, dir, s.MiBps, c.parallel, fmtCPU(s.GatewayCPU))
					}
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

// session runs fn with a port-forward session to t's podPort open.
func session(t target, mode string, fn func(local string) error) error {
	s, err := openForward(t.url, t.cfg, mode, podPort)
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
