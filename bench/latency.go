package main

import (
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/pfgateway/pfgateway/bench/internal/delayproxy"
)

// echoPort is the benchmark pod's echo port, for new-connection latency.
const echoPort = 9001

// latencyKey names one set of new-connection latencies.
type latencyKey struct {
	RTT        time.Duration // emulated kubelet round trip
	Mode, Path string
}

// latencyResults are the new-connection latencies of one run.
type latencyResults struct {
	Conns, Warmup int
	RTTs          []time.Duration
	Paths         []string
	ProxyRTT      time.Duration // p50 of a TCP echo through a delay proxy set like the kubelet's
	Samples       map[latencyKey][]time.Duration
}

// echoServer is the pod's echo port: it sends back what it reads.
type echoServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startEchoServer() (*echoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &echoServer{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return e, nil
}

func (e *echoServer) Addr() string { return e.ln.Addr().String() }

func (e *echoServer) Close() { _ = e.ln.Close(); e.wg.Wait() }

// echoOnce opens a new connection through a forward listening at local,
// sends one byte and returns the time from the dial to its echo.
func echoOnce(local string) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", local, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(start.Add(10 * time.Second))
	b := []byte{'p'}
	if _, err := c.Write(b); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, b); err != nil {
		return 0, fmt.Errorf("no echo: %w", err)
	}
	return time.Since(start), nil
}

// calibrateRTT measures what a delay proxy set to rtt adds: the median of
// 1-byte echoes over one TCP connection through it (timers overshoot).
func calibrateRTT(echo string, rtt time.Duration) (time.Duration, error) {
	p, err := delayproxy.Start(echo, rtt/2)
	if err != nil {
		return 0, err
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	var ds []time.Duration
	b := []byte{'p'}
	for range 100 {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
	}
	return percentile(ds, 0.5), nil
}

// measureLatency opens, per mode and kubelet round trip, one forward to
// the echo port on every path at once, then makes -latency-conns rounds of
// one new connection per path, the order rotated each round so that a
// change in the machine's state is shared by every path.
func measureLatency(c *config, r *results, e *env) error {
	if c.latencyConns == 0 {
		return nil
	}
	l := &r.Latency
	l.Conns, l.Warmup = c.latencyConns, c.latencyWarmup
	// Not the reference relay: it dials one fixed kubelet, so it cannot
	// reach the kubelet behind the delay proxy.
	l.Paths = slices.DeleteFunc(slices.Clone(e.paths), func(p string) bool { return p == pathRelay })
	sets := []map[string]target{e.targets}
	l.RTTs = []time.Duration{0}
	if e.rtt != nil {
		sets, l.RTTs = append(sets, e.rtt), append(l.RTTs, c.kubeletRTT)
	}
	for i, targets := range sets {
		rtt := l.RTTs[i]
		for _, mode := range c.modes {
			if err := c.quiet.wait(fmt.Sprintf("%s latency, kubelet RTT %s", mode, rtt)); err != nil {
				return err
			}
			if err := latencyRounds(c, l, targets, rtt, mode); err != nil {
				return err
			}
			line := ""
			for _, p := range l.Paths {
				line += fmt.Sprintf("  %s %.2f", p, ms(percentile(l.Samples[latencyKey{rtt, mode, p}], 0.5)))
			}
			logf("latency %-9s kubelet RTT %-5s p50 ms:%s", mode, rtt, line)
		}
	}
	return nil
}

func latencyRounds(c *config, l *latencyResults, targets map[string]target, rtt time.Duration, mode string) error {
	locals := map[string]string{}
	for _, p := range l.Paths {
		t := targets[p]
		s, err := openForward(t.url, t.cfg, mode, echoPort)
		if err != nil {
			return err
		}
		defer s.Close()
		locals[p] = s.Local
	}
	for i := -c.latencyWarmup; i < c.latencyConns; i++ {
		n := (i + c.latencyWarmup) % len(l.Paths)
		for _, p := range append(slices.Clone(l.Paths[n:]), l.Paths[:n]...) {
			d, err := echoOnce(locals[p])
			if err != nil {
				return fmt.Errorf("latency %s %s (kubelet RTT %s), connection %d: %w", mode, p, rtt, i+c.latencyWarmup+1, err)
			}
			if i >= 0 {
				k := latencyKey{rtt, mode, p}
				l.Samples[k] = append(l.Samples[k], d)
			}
		}
	}
	return nil
}

// percentile is the nearest-rank percentile q (0–1) of ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 {
	if d < 0 {
		return math.NaN()
	}
	return float64(d) / float64(time.Millisecond)
}

// latencyTable has one row per kubelet round trip, mode and path.
func (r *results) latencyTable() table {
	l := r.Latency
	t := table{{"Kubelet RTT", "Mode", "Path", "p50 ms", "p90 ms", "p99 ms", "p50 ÷ direct p50", "p50 ÷ opaque p50 (target ≤ 0.60)"}}
	f := func(v float64, prec int) string {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "–"
		}
		return fmt.Sprintf("%.*f", prec, v)
	}
	for _, rtt := range l.RTTs {
		for _, mode := range r.Modes {
			p50 := func(path string) float64 { return ms(percentile(l.Samples[latencyKey{rtt, mode, path}], 0.5)) }
			for _, p := range l.Paths {
				ds := l.Samples[latencyKey{rtt, mode, p}]
				vsDirect, vsOpaque := math.NaN(), math.NaN()
				if p != pathDirect {
					vsDirect = p50(p) / p50(pathDirect)
				}
				if o := r.opaqueOf(p); o != "" && o != p {
					vsOpaque = p50(p) / p50(o)
				}
				t = append(t, []string{rtt.String(), modeName(mode), p,
					f(ms(percentile(ds, 0.5)), 2), f(ms(percentile(ds, 0.9)), 2), f(ms(percentile(ds, 0.99)), 2),
					f(vsDirect, 2), f(vsOpaque, 2)})
			}
		}
	}
	return t
}

// latencyNote introduces the latency table.
func (r *results) latencyNote() string {
	l := r.Latency
	s := fmt.Sprintf("New-connection latency over an open forward: per path and mode one client-go port-forward session to the pod's echo port, then %d new local TCP connections through it (after %d unmeasured), each timed from the dial to the echo of its first byte, then closed; the paths take turns, connection by connection. Nearest-rank percentiles.", l.Conns, l.Warmup)
	if len(l.RTTs) > 1 {
		s += fmt.Sprintf(" With a kubelet RTT, a TCP proxy in the benchmark process delays each direction between the kubelet and whoever dials it (client-go on the direct path, the gateway otherwise) by half of it; a 1-byte echo through such a proxy measured %.2f ms.", ms(l.ProxyRTT))
	}
	return s + " The reference relay is not measured here: it dials one fixed kubelet, not the one behind the proxy."
}
