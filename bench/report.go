package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// sample is one transfer.
type sample struct {
	MiBps      float64
	GatewayCPU float64 // gateway child CPU-seconds per GiB; NaN on the direct path
	BenchCPU   float64 // this process's CPU-seconds per GiB (client, kubelet, pod server)
	GwReads    float64 // gateway read system calls per MiB; NaN on the direct path
	GwWrites   float64 // gateway write system calls per MiB
	OtherCores float64 // average cores busy with other processes during the transfer
	// Gateway heap allocations per MiB (its /metrics); NaN without counters.
	GwMallocs, GwAllocBytes float64
}

type caseKey struct{ Mode, Direction, Path string }

// results is everything one run measured.
type results struct {
	Machine    machine
	Command    string
	Size       int64
	FloorSize  int64
	Repeat     int
	Modes      []string
	Floor      []floorSample
	Samples    map[caseKey][]sample
	Gateways   []gatewayInfo
	Quiet      quietGate
	Pinned     bool
	KubeletTLS string
	Started    time.Time
	Elapsed    time.Duration
	Profiles   string
	Latency    latencyResults
	Skipped    []string // paths left out, and why
	// -parallel: samples with that many connections at once; -setup-sessions.
	Parallel        int
	ParallelSamples map[caseKey][]sample
	Setup           map[setupKey][]setupSample
	SetupPaths      []string
}

// gatewayInfo is what is known of one gateway child beyond its transfers.
type gatewayInfo struct {
	Name     string
	Bin      string // the -gateway-bin name; "" for the reference relay
	Variant  string // the -splice variant
	TLS      string // what a client negotiates with it
	RSSIdle  int64  // VmRSS once ready, before any transfer
	RSSEnd   int64  // VmRSS after the last transfer
	RSSPeak  int64  // VmHWM: the kernel's high-water mark of RSS
	TotalCPU float64
	// ScrapeCost is what one /metrics scrape allocates in the child,
	// subtracted from its allocation figures.
	ScrapeCost allocCounters
}

// stat is a median with its spread.
type stat struct{ Med, Min, Max float64 }

func summarize(xs []float64) stat {
	if len(xs) == 0 {
		return stat{math.NaN(), math.NaN(), math.NaN()}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{med, s[0], s[len(s)-1]}
}

func (s stat) format(prec int) string {
	if math.IsNaN(s.Med) {
		return "–"
	}
	if s.Min == s.Max {
		return fmt.Sprintf("%.*f", prec, s.Med)
	}
	return fmt.Sprintf("%.*f (%.*f–%.*f)", prec, s.Med, prec, s.Min, prec, s.Max)
}

func pick(ss []sample, f func(sample) float64) []float64 {
	out := make([]float64, 0, len(ss))
	for _, s := range ss {
		out = append(out, f(s))
	}
	return out
}

// ratios pairs a[i] with b[i] (the same repeat) and returns a[i]/b[i].
func ratios(a, b []float64) []float64 {
	out := make([]float64, 0, len(a))
	for i := range min(len(a), len(b)) {
		out = append(out, a[i]/b[i])
	}
	return out
}

// ratioStat is the ratio of medians, with the spread of the per-repeat ratios.
func ratioStat(a, b []float64, pairs []float64) stat {
	r := summarize(pairs)
	r.Med = summarize(a).Med / summarize(b).Med
	return r
}

// row is one line of the tables: a mode, a direction and a gateway.
type row struct {
	Mode, Direction, Gateway        string
	Direct, Via, ThroughputRatio    stat
	VsOpaque                        stat // throughput ÷ the same binary's opaque splice
	GatewayCPU, CPURatio            stat
	DirectBenchCPU, GatewayBenchCPU stat
	GwReads, GwWrites               stat
	GwMallocs, GwAllocBytes         stat
	DirectOther, GatewayOther       stat
}

// opaqueOf is the path that name's ratios "÷ opaque" divide by: the same
// binary run with -splice opaque (for the reference relay, the first
// binary's). "" if there is none or name is the direct path.
func (r *results) opaqueOf(name string) string {
	if name == pathDirect {
		return ""
	}
	bin := ""
	for _, g := range r.Gateways {
		if g.Name == name {
			bin = g.Bin
		}
	}
	for _, g := range r.Gateways {
		if g.Variant == variantOpaque && (g.Bin == bin || bin == "") {
			return g.Name
		}
	}
	return ""
}

func (r *results) rows() []row {
	floor := make([]float64, 0, len(r.Floor))
	for _, f := range r.Floor {
		floor = append(floor, f.CPUPerGiB)
	}
	get := func(ss []sample, f func(sample) float64) stat { return summarize(pick(ss, f)) }
	var out []row
	for _, mode := range r.Modes {
		for _, dir := range []string{dirDownload, dirUpload} {
			d := r.Samples[caseKey{mode, dir, pathDirect}]
			dm := pick(d, func(s sample) float64 { return s.MiBps })
			for _, gw := range r.Gateways {
				g := r.Samples[caseKey{mode, dir, gw.Name}]
				gm := pick(g, func(s sample) float64 { return s.MiBps })
				gc := pick(g, func(s sample) float64 { return s.GatewayCPU })
				vsOpaque := stat{nan, nan, nan}
				if o := r.opaqueOf(gw.Name); o != "" && o != gw.Name {
					om := pick(r.Samples[caseKey{mode, dir, o}], func(s sample) float64 { return s.MiBps })
					vsOpaque = ratioStat(gm, om, ratios(gm, om))
				}
				out = append(out, row{
					Mode: mode, Direction: dir, Gateway: gw.Name,
					Direct: summarize(dm), Via: summarize(gm), ThroughputRatio: ratioStat(gm, dm, ratios(gm, dm)), VsOpaque: vsOpaque,
					GatewayCPU: summarize(gc), CPURatio: ratioStat(gc, floor, ratios(gc, floor)),
					DirectBenchCPU:  get(d, func(s sample) float64 { return s.BenchCPU }),
					GatewayBenchCPU: get(g, func(s sample) float64 { return s.BenchCPU }),
					GwReads:         get(g, func(s sample) float64 { return s.GwReads }),
					GwWrites:        get(g, func(s sample) float64 { return s.GwWrites }),
					GwMallocs:       get(g, func(s sample) float64 { return s.GwMallocs }),
					GwAllocBytes:    get(g, func(s sample) float64 { return s.GwAllocBytes }),
					DirectOther:     get(d, func(s sample) float64 { return s.OtherCores }),
					GatewayOther:    get(g, func(s sample) float64 { return s.OtherCores }),
				})
			}
		}
	}
	return out
}

// floorStats summarizes the floor runs.
func (r *results) floorStats() (cpu, mibps, reads, writes, other stat, suite string) {
	var c, m, rd, wr, o []float64
	for _, f := range r.Floor {
		c, m, rd, wr, o = append(c, f.CPUPerGiB), append(m, f.MiBps), append(rd, f.Reads), append(wr, f.Writes), append(o, f.OtherCores)
		suite = f.Suite
	}
	return summarize(c), summarize(m), summarize(rd), summarize(wr), summarize(o), suite
}

// table is rows of cells, rendered as markdown or aligned text.
type table [][]string

// markdown writes t with its first left columns aligned left, the rest
// (figures) right.
func (t table) markdown(w io.Writer, left int) {
	for i, cells := range t {
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		if i == 0 {
			seps := make([]string, len(cells))
			for j := range seps {
				seps[j] = "--:"
				if j < left {
					seps[j] = "---"
				}
			}
			fmt.Fprintf(w, "|%s|\n", strings.Join(seps, "|"))
		}
	}
}

func (t table) text(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, cells := range t {
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	_ = tw.Flush()
}

// tables returns the main table and the diagnostics table, and how many
// of their columns are labels; a Gateway column appears when several
// gateways were measured.
func (r *results) tables() (main, diag table, labels int) {
	named := len(r.Gateways) > 1
	head := func(cells ...string) []string {
		if named {
			return append([]string{cells[0], cells[1], "Gateway"}, cells[2:]...)
		}
		return cells
	}
	main = table{head("Mode", "Direction", "Direct MiB/s", "Gateway MiB/s", "Gateway ÷ direct (target ≥ 0.85)", "Gateway ÷ opaque (target ≥ 0.95)",
		"Gateway CPU-s/GiB", "Gateway ÷ floor (target ≤ 1.10)", "Bench process CPU-s/GiB, direct", "Bench process CPU-s/GiB, via gateway")}
	diag = table{head("Mode", "Direction", "Gateway reads/MiB", "Gateway writes/MiB", "Gateway mallocs/MiB", "Gateway bytes allocated/MiB",
		"Other processes (cores), direct", "Other processes (cores), via gateway")}
	for _, x := range r.rows() {
		line := func(cells ...string) []string {
			if named {
				return append([]string{modeName(x.Mode), x.Direction, x.Gateway}, cells...)
			}
			return append([]string{modeName(x.Mode), x.Direction}, cells...)
		}
		main = append(main, line(x.Direct.format(0), x.Via.format(0), x.ThroughputRatio.format(2), x.VsOpaque.format(2), x.GatewayCPU.format(2),
			x.CPURatio.format(2), x.DirectBenchCPU.format(2), x.GatewayBenchCPU.format(2)))
		diag = append(diag, line(x.GwReads.format(0), x.GwWrites.format(0), x.GwMallocs.format(1), x.GwAllocBytes.format(0),
			x.DirectOther.format(2), x.GatewayOther.format(2)))
	}
	return main, diag, len(head("", ""))
}

// writeMarkdown writes the tables, the machine and the command.
func (r *results) writeMarkdown(w io.Writer) {
	fc, fm, fr, fw, fo, suite := r.floorStats()
	fmt.Fprintf(w, "Each figure is the median of %d runs, with the lowest and highest in brackets. Ratios are ratios of medians; their brackets are the lowest and highest per-run ratio (gateway and direct, gateway and the opaque splice, or gateway and floor, of the same run).\n\n", r.Repeat)
	fmt.Fprintf(w, "**TLS floor** (one TLS hop in one process, %s, 32 KiB writes, %s per run): **%s CPU-s/GiB**, %s MiB/s.\n\n",
		suite, sizeString(r.FloorSize), fc.format(2), fm.format(0))
	fmt.Fprintf(w, "Transfers of %s each way through one forwarded TCP connection:\n\n", sizeString(r.Size))
	main, diag, labels := r.tables()
	main.markdown(w, labels)
	fmt.Fprintf(w, "\nDiagnostics: system calls per MiB moved (/proc/PID/io syscr, syscw), heap allocations per MiB moved (the child's go_memstats_mallocs_total and go_memstats_alloc_bytes_total from its /metrics just before and after the transfer, less one scrape's own, given below; exact to about a thousand objects per transfer (now and then a few thousand), since the runtime counts them a cached span at a time), and the CPU other processes on the machine used meanwhile (/proc/stat busy time minus this benchmark's and the gateway's, in cores). The floor made %s reads and %s writes per MiB; other processes used %s cores during it.\n\n",
		fr.format(0), fw.format(0), fo.format(2))
	diag.markdown(w, labels)
	fmt.Fprintln(w)
	if len(r.Latency.Samples) > 0 {
		fmt.Fprintf(w, "%s\n\n", r.latencyNote())
		r.latencyTable().markdown(w, 3)
		fmt.Fprintln(w)
	}
	if len(r.ParallelSamples) > 0 || len(r.Setup) > 0 {
		fmt.Fprintf(w, "%s\n\n", parallelNote)
	}
	if len(r.ParallelSamples) > 0 {
		r.parallelTable().markdown(w, 3)
		fmt.Fprintln(w)
	}
	if len(r.Setup) > 0 {
		r.setupTable().markdown(w, 2)
		fmt.Fprintln(w)
	}
	for _, g := range r.Gateways {
		fmt.Fprintf(w, "%s: VmRSS %s when ready, %s after the last transfer, peak (VmHWM) %s; CPU over its whole life (rusage at exit) %.1f s; a client negotiates %s with it%s.\n\n",
			r.gatewayLabel(g.Name, "Gateway"), bytesString(g.RSSIdle), bytesString(g.RSSEnd), bytesString(g.RSSPeak), g.TotalCPU, g.TLS, g.scrapeNote())
	}
	fmt.Fprintf(w, "The kubelet negotiates %s with client-go and with the gateway (same Go defaults).\n\n", r.KubeletTLS)
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "**Not measured:** %s.\n\n", s)
	}
	fmt.Fprintf(w, "%s\n\n", r.quietNote())
	m := r.Machine
	fmt.Fprintf(w, "Machine: %s, %d cores (GOMAXPROCS %d), Linux %s, %s, %s. Run started %s and took %s.\n\n",
		m.CPU, m.Cores, m.GOMAXPROCS, m.Kernel, m.OS, m.GoVersion, r.Started.UTC().Format(time.RFC3339), r.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "Command: `%s`\n", r.Command)
	if r.Profiles != "" {
		fmt.Fprintf(w, "\nCPU profiles of the gateway (one per gateway transfer) are in `%s`; the profiler adds a little to the gateway's CPU figures.\n", r.Profiles)
	}
}

// writeText prints the results as aligned tables for a terminal.
func (r *results) writeText(w io.Writer) {
	fc, fm, fr, fw, fo, suite := r.floorStats()
	fmt.Fprintf(w, "TLS floor (%s, %s): %s CPU-s/GiB, %s MiB/s, %s reads + %s writes per MiB, other processes %s cores\n",
		suite, sizeString(r.FloorSize), fc.format(2), fm.format(0), fr.format(0), fw.format(0), fo.format(2))
	fmt.Fprintf(w, "Transfers: %s each, median (min–max) of %d runs\n\n", sizeString(r.Size), r.Repeat)
	main, diag, _ := r.tables()
	main.text(w)
	fmt.Fprintln(w)
	diag.text(w)
	fmt.Fprintln(w)
	if len(r.Latency.Samples) > 0 {
		fmt.Fprintf(w, "New-connection latency (dial to 1-byte echo), %d connections per path after %d unmeasured", r.Latency.Conns, r.Latency.Warmup)
		if len(r.Latency.RTTs) > 1 {
			fmt.Fprintf(w, "; kubelet RTT emulated by a delay proxy (a TCP echo through it: %.2f ms)", ms(r.Latency.ProxyRTT))
		}
		fmt.Fprintln(w)
		r.latencyTable().text(w)
		fmt.Fprintln(w)
	}
	if len(r.ParallelSamples) > 0 {
		r.parallelTable().text(w)
		fmt.Fprintln(w)
	}
	if len(r.Setup) > 0 {
		fmt.Fprintf(w, "Session setup, %d sessions per path and mode:\n", len(r.Setup[setupKey{r.Modes[0], pathDirect}]))
		r.setupTable().text(w)
		fmt.Fprintln(w)
	}
	for _, g := range r.Gateways {
		fmt.Fprintf(w, "%s: RSS %s ready, %s at end, peak %s; CPU total %.1f s; %s%s\n",
			r.gatewayLabel(g.Name, "gateway"), bytesString(g.RSSIdle), bytesString(g.RSSEnd), bytesString(g.RSSPeak), g.TotalCPU, g.TLS, g.scrapeNote())
	}
	fmt.Fprintln(w, r.quietNote())
	for _, s := range r.Skipped {
		fmt.Fprintln(w, "NOT MEASURED: "+s)
	}
	m := r.Machine
	fmt.Fprintf(w, "kubelet: %s\nmachine: %s, %d cores, Linux %s, %s; took %s\n", r.KubeletTLS, m.CPU, m.Cores, m.Kernel, m.GoVersion, r.Elapsed.Round(time.Second))
}

// scrapeNote reports what a /metrics scrape allocates in a gateway child.
func (g gatewayInfo) scrapeNote() string {
	if g.Bin == "" {
		return ""
	}
	return fmt.Sprintf("; one /metrics scrape allocates %.0f objects, %.0f KiB in it", g.ScrapeCost.Mallocs, g.ScrapeCost.Bytes/1024)
}

// gatewayLabel names a gateway in prose: just "Gateway" when there is one.
func (r *results) gatewayLabel(name, word string) string {
	if name == pathAPIServer {
		return "kube-apiserver"
	}
	if name == pathRelay {
		if word == "Gateway" {
			return "Reference relay"
		}
		return "reference relay"
	}
	if len(r.Gateways) == 1 || (name == pathGateway && len(r.Gateways) == 2 && r.Gateways[1].Name == pathRelay) {
		return word
	}
	return word + " " + name
}

func (r *results) quietNote() string {
	pin := ""
	if r.Pinned {
		pin = " With -pin: the benchmark process (floor included) ran on CPU 0 and each gateway on CPU 1, GOMAXPROCS 1 each."
	}
	return r.quietText() + pin
}

func (r *results) quietText() string {
	q := r.Quiet
	if q.Below <= 0 {
		return "Measurements did not wait for a quiet machine (-quiet-below 0)."
	}
	return fmt.Sprintf("Each measurement waited (at most %s) for other processes to use less than %.2f cores; %d started on a busier machine.", q.MaxWait, q.Below, q.Missed)
}

func modeName(m string) string {
	if m == modeWebSocket {
		return "WebSocket tunnel"
	}
	return "SPDY"
}

func bytesString(n int64) string { return fmt.Sprintf("%.1f MiB", mib(n)) }

func sizeString(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// parseSize reads sizes like 1GiB, 512MiB, 64KiB, 1G, 100M or 4096.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	var f float64
	if _, err := fmt.Sscan(num, &f); err != nil || f <= 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return int64(f * float64(mult)), nil
}
