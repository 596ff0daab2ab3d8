package main

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"
)

// Two more figures per path and mode: throughput with several forwarded
// connections at once through one session, and session setup latency.

// measureParallel runs n transfers of size/n bytes at once, each through
// its own forwarded connection of one session, and reads the counters
// around them all: aggregate MiB/s and the proxy's CPU per GiB.
func measureParallel(gw *gatewayProc, local, dir string, size int64, n int) (sample, error) {
	runtime.GC()
	each := size / int64(n)
	before, err := takeSnapshot(gw)
	if err != nil {
		return sample{}, err
	}
	errs := make(chan error, n)
	for range n {
		go func() { _, err := transfer(local, dir, each, false); errs <- err }()
	}
	for range n {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return sample{}, err
	}
	after, err := takeSnapshot(gw)
	if err != nil {
		return sample{}, err
	}
	d := diff(before, after, each*int64(n))
	return sample{MiBps: mib(each*int64(n)) / d.Seconds, GatewayCPU: d.GatewayCPU, BenchCPU: d.SelfCPU, OtherCores: d.OtherCores,
		GwReads: nan, GwWrites: nan, GwMallocs: nan, GwAllocBytes: nan}, nil
}

// setupKey names the setup latencies of one path and mode.
type setupKey struct{ Mode, Path string }

// setupSample is one session's setup: until client-go's port forwarder is
// ready (TLS, upgrade, the proxy's authentication and authorization), and
// until the first byte sent through its first connection came back.
type setupSample struct{ Ready, FirstEcho time.Duration }

// measureSetup opens -setup-sessions sessions per mode on every path
// (except the reference relay, like the latency measurement), the paths
// taking turns, each timed to ready and to its first echo, then closed.
func measureSetup(c *config, r *results, e *env) error {
	if c.setupSessions == 0 {
		return nil
	}
	r.Setup = map[setupKey][]setupSample{}
	paths := slices.DeleteFunc(slices.Clone(e.paths), func(p string) bool { return p == pathRelay })
	for _, mode := range c.modes {
		if err := c.quiet.wait(mode + " setup latency"); err != nil {
			return err
		}
		for i := range c.setupSessions {
			order := append(slices.Clone(paths[i%len(paths):]), paths[:i%len(paths)]...)
			for _, p := range order {
				t := e.targets[p]
				start := time.Now()
				s, err := openForward(t.url, t.cfg, mode, echoPort)
				if err != nil {
					return fmt.Errorf("setup %s %s: %w", mode, p, err)
				}
				ready := time.Since(start)
				_, err = echoOnce(s.Local)
				first := time.Since(start)
				s.Close()
				if err != nil {
					return fmt.Errorf("setup %s %s: first echo: %w", mode, p, err)
				}
				k := setupKey{mode, p}
				r.Setup[k] = append(r.Setup[k], setupSample{ready, first})
			}
		}
		var line []string
		for _, p := range paths {
			line = append(line, fmt.Sprintf("%s %.2f", p, ms(percentile(r.setupTimes(mode, p, false), 0.5))))
		}
		logf("setup %-9s p50 ms to the first echo: %v", mode, line)
	}
	r.SetupPaths = paths
	return nil
}

func (r *results) setupTimes(mode, path string, ready bool) []time.Duration {
	var out []time.Duration
	for _, s := range r.Setup[setupKey{mode, path}] {
		if ready {
			out = append(out, s.Ready)
		} else {
			out = append(out, s.FirstEcho)
		}
	}
	return out
}

// parallelTable has one row per mode, direction and path.
func (r *results) parallelTable() table {
	t := table{{"Mode", "Direction", "Path", fmt.Sprintf("MiB/s, %d connections at once", r.Parallel), "Proxy CPU-s/GiB"}}
	for _, mode := range r.Modes {
		for _, dir := range []string{dirDownload, dirUpload} {
			for _, p := range r.allPaths() {
				ss := r.ParallelSamples[caseKey{mode, dir, p}]
				if len(ss) == 0 {
					continue
				}
				t = append(t, []string{modeName(mode), dir, p,
					summarize(pick(ss, func(s sample) float64 { return s.MiBps })).format(0),
					summarize(pick(ss, func(s sample) float64 { return s.GatewayCPU })).format(2)})
			}
		}
	}
	return t
}

// setupTable has one row per mode and path.
func (r *results) setupTable() table {
	t := table{{"Mode", "Path", "ready p50 ms", "ready p99 ms", "first echo p50 ms", "first echo p99 ms"}}
	f := func(ds []time.Duration, q float64) string {
		v := ms(percentile(ds, q))
		if math.IsNaN(v) {
			return "–"
		}
		return fmt.Sprintf("%.1f", v)
	}
	for _, mode := range r.Modes {
		for _, p := range r.SetupPaths {
			rd, fe := r.setupTimes(mode, p, true), r.setupTimes(mode, p, false)
			t = append(t, []string{modeName(mode), p, f(rd, 0.5), f(rd, 0.99), f(fe, 0.5), f(fe, 0.99)})
		}
	}
	return t
}

// allPaths is the direct path, then every proxy in setup order.
func (r *results) allPaths() []string {
	out := []string{pathDirect}
	for _, g := range r.Gateways {
		out = append(out, g.Name)
	}
	return out
}

const parallelNote = "Parallel connections: in one session per path and mode, that many forwarded connections at once, each moving -size ÷ n bytes; aggregate MiB/s from the first request to the last byte, and the proxy process's CPU per GiB over the same window (/proc/PID/stat). Setup: a new client-go port-forward session per path, timed to client-go's ready signal (TLS, upgrade, authentication, authorization) and to the echo of the first byte through its first connection; the paths take turns."
