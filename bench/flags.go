package main

import (
	"errors"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

type config struct {
	size, floorSize, warmup int64
	repeat                  int
	modes                   []string
	out                     string
	gateways                []gatewaySpec // empty: build ./cmd/pfgateway
	splice                  []spliceVariant
	profileDir              string
	quiet                   quietGate
	pin                     bool
	relay                   bool
	latencyConns            int             // 0: no latency measurement
	latencyWarmup           int             // unmeasured connections first
	kubeletRTT              time.Duration   // 0: latency at rtt 0 only
	paths                   map[string]bool // -paths
	chart                   string          // PNG file; "" with -out: next to it
	parallel                int             // connections at once; 0 or 1: not measured
	setupSessions           int             // sessions timed per path and mode; 0: not measured
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
	if name == "" || bin == "" || slices.Contains(pathNames, name) || strings.ContainsAny(name, "/ .") {
		return fmt.Errorf("want NAME=PATH with a NAME other than %s and no spaces, dots or slashes", strings.Join(pathNames, ", "))
	}
	for _, g := range *f.specs {
		if g.Name == name {
			return fmt.Errorf("gateway %q named twice", name)
		}
	}
	*f.specs = append(*f.specs, gatewaySpec{name, bin})
	return nil
}

// spliceVariant is one configuration of a gateway child: the flags it gets
// besides the dev cluster's files.
type spliceVariant struct {
	Name string
	Args []string
}

const (
	variantOpaque  = "opaque"
	variantDefault = "default"
)

// spliceVariants are what -splice may name.
var spliceVariants = []spliceVariant{
	{variantOpaque, []string{"--splice-mode=opaque"}},
	{"streams", []string{"--splice-mode=streams", "--early-stream-reply=false"}},
	{"streams-early", []string{"--splice-mode=streams", "--early-stream-reply=true"}},
	// No flags at all: for gateway builds that predate --splice-mode.
	{variantDefault, nil},
}

func parseSplice(s string) ([]spliceVariant, error) {
	var out []spliceVariant
	var err error
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(spliceVariants, func(v spliceVariant) bool { return v.Name == name })
		switch {
		case i < 0:
			err = errors.Join(err, fmt.Errorf("-splice: unknown variant %q (want opaque, streams, streams-early or default)", name))
		case slices.ContainsFunc(out, func(v spliceVariant) bool { return v.Name == name }):
			err = errors.Join(err, fmt.Errorf("-splice: %s named twice", name))
		default:
			out = append(out, spliceVariants[i])
		}
	}
	return out, err
}

// gatewayPath names the path of binary spec run as variant v: the variant
// alone when there is one binary, NAME.variant when there are several, and
// the binary's name for the default variant.
func gatewayPath(spec gatewaySpec, v spliceVariant, manyBins bool) string {
	switch {
	case v.Name == variantDefault:
		return spec.Name
	case manyBins:
		return spec.Name + "." + v.Name
	}
	return v.Name
}

// parseFlags reads the command line; a nil error means c is complete.
func parseFlags() (config, error) {
	var c config
	var size, floorSize, warmup, modes, splice, paths string
	flag.StringVar(&size, "size", "1GiB", "bytes per transfer (each direction, each path, each mode)")
	flag.StringVar(&floorSize, "floor-size", "2GiB", "bytes moved by each TLS floor measurement")
	flag.StringVar(&warmup, "warmup", "64MiB", "bytes of the unmeasured warm-up transfers on every path")
	flag.IntVar(&c.repeat, "repeat", 3, "runs of every measurement; figures are medians")
	flag.StringVar(&modes, "modes", "spdy,websocket", "comma-separated: spdy, websocket")
	flag.StringVar(&c.out, "out", "", "also write the results as markdown to this file")
	flag.Var(gatewayFlag{&c.gateways}, "gateway-bin", "measure this prebuilt gateway binary instead of building ./cmd/pfgateway; repeat as NAME=PATH to compare several in one run")
	flag.StringVar(&splice, "splice", "opaque,streams,streams-early", "gateway configurations to run side by side, one child each: opaque (--splice-mode=opaque), streams (--splice-mode=streams --early-stream-reply=false), streams-early (--early-stream-reply=true), default (no such flags, for older builds)")
	flag.StringVar(&c.profileDir, "cpuprofile-dir", "", "run the gateway under a CPU profiler (bench/internal/gwprof) and write one profile per gateway transfer here; with -gateway-bin, the binaries must be built from bench/internal/gwprof")
	flag.Float64Var(&c.quiet.Below, "quiet-below", 0.3, "before each measurement, wait until other processes use fewer cores than this (0: do not wait)")
	flag.DurationVar(&c.quiet.MaxWait, "quiet-wait", 2*time.Minute, "longest wait for a quiet machine before measuring anyway")
	flag.BoolVar(&c.pin, "pin", false, "run this process (client, kubelet, pod, floor) on CPU 0 and each gateway on CPU 1, GOMAXPROCS 1 each, so a gateway has a core of its own")
	flag.BoolVar(&c.relay, "relay", true, "also measure the reference relay (bench/internal/refrelay), the simplest TLS-terminating relay, as the path \""+pathRelay+"\"")
	flag.IntVar(&c.latencyConns, "latency-conns", 500, "new-connection latency: measured connections per path through one open forward (0: skip)")
	flag.IntVar(&c.latencyWarmup, "latency-warmup", 20, "new-connection latency: unmeasured connections per path first")
	flag.DurationVar(&c.kubeletRTT, "kubelet-rtt", time.Millisecond, "new-connection latency: also measure with this round trip added in front of the kubelet, for the direct path and the gateways alike (0: only without)")
	flag.IntVar(&c.parallel, "parallel", 4, "also measure this many forwarded connections at once through one session, -size ÷ n bytes each (0 or 1: skip)")
	flag.IntVar(&c.setupSessions, "setup-sessions", 20, "session setup latency: sessions opened per path and mode (0: skip)")
	flag.StringVar(&c.chart, "chart", "", "write a PNG chart (throughput, CPU-s/GiB, latency) here; default with -out: the same name with .png")
	flag.StringVar(&paths, "paths", strings.Join(pathNames, ","), "paths to measure: direct and floor always; apiserver (the real kube-apiserver, skipped with a note when its binary is missing), pfgateway (every -gateway-bin × -splice child), relay (as -relay)")
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
	var serr, perr error
	c.splice, serr = parseSplice(splice)
	c.paths, perr = parsePaths(paths)
	err = errors.Join(err, serr, perr)
	c.applyPaths()
	if c.latencyConns < 0 || c.latencyWarmup < 0 || c.kubeletRTT < 0 || c.parallel < 0 || c.setupSessions < 0 {
		err = errors.Join(err, errors.New("-latency-conns, -latency-warmup, -kubelet-rtt, -parallel and -setup-sessions must not be negative"))
	}
	if err == nil && c.pin && runtime.NumCPU() < 2 {
		err = errors.New("-pin needs at least 2 CPUs")
	}
	if err == nil && flag.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if err == nil {
		err = checkPathNames(c)
	}
	return c, err
}

// checkPathNames rejects combinations that would give two paths one name.
func checkPathNames(c config) error {
	seen := map[string]bool{pathDirect: true, pathRelay: true, pathAPIServer: true}
	specs := c.gateways
	if len(specs) == 0 {
		specs = []gatewaySpec{{Name: pathGateway}}
	}
	for _, s := range specs {
		for _, v := range c.splice {
			p := gatewayPath(s, v, len(specs) > 1)
			if seen[p] {
				return fmt.Errorf("-gateway-bin %s with -splice %s names the path %q twice", s.Name, v.Name, p)
			}
			seen[p] = true
		}
	}
	return nil
}
