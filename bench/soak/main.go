// Command soak drives many forwarded connections through pfgateway child
// processes over client-go's SPDY and SPDY-over-WebSocket sessions, with
// random faults, checks every byte and every expected error, and samples
// the gateways' goroutines, descriptors, RSS and heap every second:
//
//	go run ./bench/soak [-n 100000] [-sessions 16] [-streams 4] [-faults ...] [-fault-rate 0.1] [-backend-fault-interval 3s] [-samples soak.csv]
//
// It exits non-zero when any connection ended in a way its fault does not
// explain, or when a gateway did not return to its goroutine and descriptor
// baseline after the last session closed. See bench/README.md, "Soak".
package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

type config struct {
	n               int
	sessions        int
	streams         int
	connsPerSession int
	protocols       []string
	splice          []string
	faults          []fault
	faultRate       float64
	maxPayload      int
	seed            uint64
	connTimeout     time.Duration
	samples         string
	plot            string
	gatewayBin      string
	gatewayArgs     []string
	settle          time.Duration
	idleSessions    int
	idleQuiet       time.Duration
	idlePayload     int
	backendInterval time.Duration
	faultWindow     time.Duration
	faultGrace      time.Duration
}

// split divides -faults into those drawn per connection and the backend
// events.
func (c *config) split() (conn, backend []fault) {
	for _, f := range c.faults {
		if f.backend() {
			backend = append(backend, f)
		} else {
			conn = append(conn, f)
		}
	}
	return conn, backend
}

func parseFlags() (*config, error) {
	c := &config{faults: []fault{faultClientReset, faultPodClose, faultNotListening, faultForbidden, faultSessionClose, faultKubeletRestart, faultBackendCut}}
	var protocols, splice, gwArgs string
	flag.IntVar(&c.n, "n", 100000, "forwarded connections in all")
	flag.IntVar(&c.sessions, "sessions", 16, "concurrent sessions (client-go port-forward connections to a gateway)")
	flag.IntVar(&c.streams, "streams", 4, "concurrent forwarded connections per session")
	flag.IntVar(&c.connsPerSession, "conns-per-session", 1000, "forwarded connections before a session is closed and a new one opened")
	flag.StringVar(&protocols, "protocols", "spdy,websocket", "client-go dialers, taken in turn by new sessions: spdy, websocket (the SPDY-over-WebSocket tunnel)")
	flag.StringVar(&splice, "splice", "streams-early,opaque", "gateway children, one per configuration, taken in turn by new sessions: streams-early, streams, opaque")
	flag.Var(faultFlag{&c.faults}, "faults", "faults to inject (comma-separated; empty for none): "+strings.Join(faultNames[1:], ", ")+"; each has an equal share of -fault-rate except session-close, a tenth of one, and the backend faults kubelet-restart and backend-cut, which are events (-backend-fault-interval)")
	flag.DurationVar(&c.backendInterval, "backend-fault-interval", 3*time.Second, "mean time between backend faults (kubelet-restart, backend-cut; uniform in ½× to 1½×), each hitting every session at once")
	flag.DurationVar(&c.faultWindow, "fault-window", 5*time.Second, "a connection failed by a backend fault must end within this long of the fault (and have begun before then), or it is unexpected")
	flag.DurationVar(&c.faultGrace, "fault-grace", time.Second, "a connection failed by a backend fault must have begun at most this long after the fault's injection ended (the gateway notices the loss when it next reads), or it is unexpected")
	flag.Float64Var(&c.faultRate, "fault-rate", 0.1, "fraction of connections that get a fault")
	flag.IntVar(&c.maxPayload, "max-payload", 128<<10, "largest payload per direction in bytes; sizes are uniform in their logarithm from 1 byte")
	flag.Uint64Var(&c.seed, "seed", uint64(time.Now().UnixNano()), "random seed (sizes, faults, bytes); printed so a run can be repeated")
	flag.DurationVar(&c.connTimeout, "conn-timeout", time.Minute, "a forwarded connection not done in this long is an unexpected error")
	flag.StringVar(&c.samples, "samples", "", "write the once-a-second samples (goroutines, fds, RSS, heap per gateway) to this CSV file")
	flag.StringVar(&c.plot, "plot", "", "with -samples, draw the samples as curves over the connections done into this PNG file")
	flag.StringVar(&c.gatewayBin, "gateway-bin", "", "run this gateway binary instead of building ./cmd/pfgateway")
	flag.StringVar(&gwArgs, "gateway-args", "", "extra flags for every gateway child, space-separated (e.g. \"--max-sessions=100\")")
	flag.DurationVar(&c.settle, "settle", 30*time.Second, "after the last session, how long a gateway may take to return to its goroutine and fd baseline")
	flag.IntVar(&c.idleSessions, "idle-sessions", 0, "first measure what this many idle sessions cost a fresh gateway child, per -splice and -protocols (RSS, heap, goroutines, fds per session); with -n 0 only that")
	flag.IntVar(&c.idlePayload, "idle-payload", 0, "with -idle-sessions, bytes each idle session first moves each way through one more connection (0: none), as a session busy before it went idle")
	flag.DurationVar(&c.idleQuiet, "idle-quiet", 3*time.Second, "with -idle-sessions, how long the sessions sit idle before the gateway is read (the Go runtime forces a GC every 2 minutes: over 2m the figure is a steady state's, without the garbage of the sessions' set-up)")
	flag.Parse()
	if c.plot != "" && c.samples == "" {
		fmt.Fprintln(os.Stderr, "soak: -plot needs -samples")
		os.Exit(2)
	}
	// The test kubelet runs in this process and logs every refused dial
	// and reset the faults cause; keep the output to the report.
	klog.SetOutput(io.Discard)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("logtostderr", "false")
	_ = klogFlags.Set("stderrthreshold", "FATAL")
	c.protocols = splitList(protocols)
	c.splice = splitList(splice)
	c.gatewayArgs = strings.Fields(gwArgs)
	switch {
	case c.n < 0 || c.idleSessions < 0 || c.n == 0 && c.idleSessions == 0:
		return nil, fmt.Errorf("-n must be positive (or 0 with -idle-sessions)")
	case c.sessions < 1 || c.streams < 1 || c.connsPerSession < 1:
		return nil, fmt.Errorf("-sessions, -streams and -conns-per-session must be positive")
	case c.faultRate < 0 || c.faultRate > 1:
		return nil, fmt.Errorf("-fault-rate must be between 0 and 1")
	case c.backendInterval <= 0 || c.faultWindow <= 0 || c.faultGrace <= 0 || c.faultGrace > c.faultWindow:
		return nil, fmt.Errorf("-backend-fault-interval, -fault-window and -fault-grace must be positive, -fault-grace at most -fault-window")
	case c.maxPayload < 2 || c.maxPayload > 64<<20:
		return nil, fmt.Errorf("-max-payload must be between 2 and 64 MiB")
	case c.idlePayload < 0 || c.idlePayload > 64<<20:
		return nil, fmt.Errorf("-idle-payload must be between 0 and 64 MiB")
	case len(c.protocols) == 0 || len(c.splice) == 0:
		return nil, fmt.Errorf("-protocols and -splice must name at least one")
	}
	for _, p := range c.protocols {
		if p != "spdy" && p != "websocket" {
			return nil, fmt.Errorf("-protocols: unknown %q", p)
		}
	}
	for _, s := range c.splice {
		if _, ok := splices[s]; !ok {
			return nil, fmt.Errorf("-splice: unknown %q", s)
		}
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func main() {
	c, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	ok, err := run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// runner hands out the connections and collects their results.
type runner struct {
	c      *config
	gws    []*gateway
	st     *stats
	bf     *backendFaults // nil without backend faults
	issued atomic.Int64   // connections handed out
	open   atomic.Int64   // sessions open
	turn   atomic.Int64   // which gateway and protocol the next session takes
}

func run(c *config) (bool, error) {
	gws, spawn, bf, cleanup, err := setUp(c)
	if err != nil {
		return false, err
	}
	defer cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; logf("interrupted: stopping the gateways"); cleanup(); os.Exit(130) }()

	r := &runner{c: c, gws: gws, st: newStats(), bf: bf}
	// Warm up each gateway and protocol (informers, TLS session state, the
	// kubelet client) before the baseline the leak check compares with.
	for _, gw := range gws {
		for _, p := range c.protocols {
			if err := r.warmUp(gw, p); err != nil {
				return false, fmt.Errorf("warm-up %s %s: %w", gw.name, p, err)
			}
		}
	}
	if c.idleSessions > 0 {
		if err := r.idle(spawn); err != nil {
			return false, err
		}
	}
	if c.n == 0 {
		return true, nil
	}
	time.Sleep(time.Second)
	smp, err := startSampler(c.samples, gws, r)
	if err != nil {
		return false, err
	}
	base := smp.baseline()
	logf("seed %d: %d connections over %d sessions × %d streams, protocols %v, gateways %v, faults %v at %.0f%%",
		c.seed, c.n, c.sessions, c.streams, c.protocols, c.splice, c.faults, 100*c.faultRate)
	start := time.Now()
	if bf != nil {
		bf.start(c.seed)
	}
	var wg sync.WaitGroup
	for w := range c.sessions {
		wg.Add(1)
		go func() { defer wg.Done(); r.worker(w) }()
	}
	progress := time.NewTicker(10 * time.Second)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-progress.C:
			d, u := r.st.progress()
			logf("%d/%d connections, %d unexpected, %d sessions open", d, c.n, u, r.open.Load())
		}
	}
	progress.Stop()
	elapsed := time.Since(start)
	bf.halt()
	settled := smp.settle(base, c.settle)
	smp.stop()
	report(os.Stdout, c, r.st, elapsed, smp, base, settled, bf)
	if c.plot != "" {
		if err := writePlot(c.samples, c.plot); err != nil {
			return false, err
		}
		logf("curves in %s", c.plot)
	}
	if r.st.unexpectedCount() > 0 {
		// The gateways' own account of what went wrong; their logs go
		// with the temporary directory.
		for _, gw := range gws {
			logf("gateway %s: sessions that did not complete (first 40):\n%s", gw.name, notCompleted(gw.proc.LogTail(1<<30), 40))
		}
	}
	if err := smp.err(); err != nil {
		return false, err
	}
	return r.st.unexpectedCount() == 0 && settled.ok && bf.ok(), nil
}

// idle measures -idle-sessions idle sessions on a fresh gateway child per
// splice and protocol, so that no measurement reuses memory another freed.
func (r *runner) idle(spawn func(string) (*gateway, error)) error {
	var results []idleResult
	for _, name := range r.c.splice {
		for _, proto := range r.c.protocols {
			gw, err := spawn(name)
			if err != nil {
				return err
			}
			res, err := func() (idleResult, error) {
				defer gw.proc.Stop()
				if err := r.warmUp(gw, proto); err != nil {
					return idleResult{}, err
				}
				time.Sleep(time.Second)
				return r.measureIdle(gw, proto, r.c.idleSessions)
			}()
			if err != nil {
				return fmt.Errorf("idle sessions on %s over %s: %w", name, proto, err)
			}
			logf("%d idle %s sessions on %s: RSS %s → %s", res.n, proto, name, mib(res.before.rss), mib(res.after.rss))
			results = append(results, res)
		}
	}
	idleReport(os.Stdout, results)
	return nil
}

// warmUp runs a few clean connections on one session.
func (r *runner) warmUp(gw *gateway, proto string) error {
	conn, err := gw.dial(proto)
	if err != nil {
		return err
	}
	s := newSession(conn, gw, proto)
	defer s.close()
	rng := rand.New(rand.NewPCG(r.c.seed, 0))
	for range 10 {
		if res := s.run(faultNone, rng, r.c.maxPayload, r.c.connTimeout, nil); res.class != classOK {
			return res.err
		}
	}
	return nil
}

// worker keeps one session open at a time until every connection is handed
// out: -streams goroutines on it, each running connections one after the
// other.
func (r *runner) worker(w int) {
	for r.issued.Load() < int64(r.c.n) {
		turn := int(r.turn.Add(1) - 1)
		gw := r.gws[turn%len(r.gws)]
		proto := r.c.protocols[(turn/len(r.gws))%len(r.c.protocols)]
		conn, err := gw.dial(proto)
		if err != nil {
			// The gateway dials the kubelet to open a session: while a
			// backend fault lasts that may fail.
			if ev, ok := r.bf.near(time.Now()); ok {
				r.st.sessionOutcome(ev.f.String()+"-open-refused", err)
			} else {
				r.st.sessionFailed(fmt.Errorf("%s %s: opening a session: %w", gw.name, proto, err))
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		r.open.Add(1)
		r.st.sessionOpened()
		s := newSession(conn, gw, proto)
		var left atomic.Int64
		left.Store(int64(r.c.connsPerSession))
		var wg sync.WaitGroup
		for k := range r.c.streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(r.c.seed, uint64(turn)<<16|uint64(k)))
				for !s.closed.Load() && !s.isLost() && left.Add(-1) >= 0 && r.issued.Add(1) <= int64(r.c.n) {
					r.st.add(s.run(r.pick(rng, gw), rng, r.c.maxPayload, r.c.connTimeout, r.bf))
				}
			}()
		}
		wg.Wait()
		if s.isLost() {
			r.sessionLost(s)
		}
		if s.hitAt.Load() != 0 {
			r.st.sessionSurvival(s.survived.Load())
		}
		s.close()
		r.open.Add(-1)
	}
}

// notCompleted picks the gateway log's session ends other than
// "completed".
func notCompleted(log string, n int) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if len(out) < n && strings.Contains(l, `"Port-forward session ended"`) && !strings.Contains(l, `outcome="completed"`) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// sessionLost accounts for a session the gateway ended: expected only on
// an opaque gateway within a backend fault's window.
func (r *runner) sessionLost(s *session) {
	if !s.gw.reconnects {
		if ev, ok := r.bf.near(s.lostAt); ok {
			r.st.sessionOutcome(ev.f.String()+"-lost-session", nil)
			return
		}
	}
	r.st.sessionFailed(fmt.Errorf("%s %s: the gateway ended the session (client-go: lost connection to pod)%s", s.gw.name, s.proto, r.bf.describe(s.lostAt)))
}

// pick draws a connection's fault among the per-connection ones.
func (r *runner) pick(rng *rand.Rand, gw *gateway) fault {
	faults, _ := r.c.split()
	if len(faults) == 0 || rng.Float64() >= r.c.faultRate {
		return faultNone
	}
	// Equal shares, session-close a tenth of one: it takes the session's
	// other in-flight connections with it.
	var total float64
	for _, f := range faults {
		total += weight(f)
	}
	x := rng.Float64() * total
	for _, f := range faults {
		if x -= weight(f); x < 0 {
			if f == faultForbidden && !gw.policy {
				return faultNone // an opaque splice cannot enforce ports
			}
			return f
		}
	}
	return faultNone
}

func weight(f fault) float64 {
	if f == faultSessionClose {
		return 0.1
	}
	return 1
}
