package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// idleResult is what N idle sessions cost one gateway.
type idleResult struct {
	gw, proto     string
	n             int
	before, after point
	// After a GC that returned the free heap to the OS (gwprof children),
	// before and after the sessions.
	liveBase, live *point
	// Allocated and collected while the sessions sat idle: what keeps the
	// heap growing toward the GC's goal when nothing moves.
	quietAlloc, quietGCs float64
	quiet                time.Duration
}

func (r idleResult) per(f func(point) int64) float64 {
	return float64(f(r.after)-f(r.before)) / float64(r.n)
}

// measureIdle opens n sessions of proto on gw, runs one small clean
// connection on each (so the per-session state a real session reaches,
// header decoders included, exists) and, with -idle-payload, one more
// that moves that many bytes each way, leaves them idle and reads the gateway
// before and after: RSS, heap in use, goroutines and descriptors per
// session. Then it closes them and waits for the gateway to settle.
func (r *runner) measureIdle(gw *gateway, proto string, n int) (idleResult, error) {
	res := idleResult{gw: gw.name, proto: proto, n: n}
	var err error
	if res.before, err = read(gw); err != nil {
		return res, err
	}
	profiling := os.Getenv("PFGW_PROFILE_DIR") != ""
	if profiling {
		// The baseline of the live figures, with its own free heap
		// returned (heap-1.pprof: a base for pprof -diff_base).
		if res.liveBase, err = readReleased(gw); err != nil {
			return res, err
		}
	}
	sessions := make([]*session, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(r.c.seed, uint64(w)))
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				conn, err := gw.dial(proto)
				if err != nil {
					errs <- fmt.Errorf("session %d: %w", i, err)
					return
				}
				s := newSession(conn, gw, proto)
				sessions[i] = s
				if res := s.run(faultNone, rng, 4<<10, r.c.connTimeout, nil); res.class != classOK {
					errs <- fmt.Errorf("session %d: %v", i, res.err)
					return
				}
				if r.c.idlePayload > 0 {
					if err := s.burst(r.c.idlePayload, rng.Uint64(), r.c.connTimeout); err != nil {
						errs <- fmt.Errorf("session %d: a burst of %d bytes: %w", i, r.c.idlePayload, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.close()
			}
		}
	}()
	if err := <-errs; err != nil {
		return res, err
	}
	allocsAndGCs := func() ([]float64, error) {
		return scrape(gw.proc.AdminAddr, "go_memstats_alloc_bytes_total", "go_gc_duration_seconds_count")
	}
	quiet, err := allocsAndGCs()
	if err != nil {
		return res, err
	}
	time.Sleep(r.c.idleQuiet)
	quietEnd, err := allocsAndGCs()
	if err != nil {
		return res, err
	}
	res.quietAlloc, res.quietGCs, res.quiet = quietEnd[0]-quiet[0], quietEnd[1]-quiet[1], r.c.idleQuiet
	res.after, err = read(gw)
	if err == nil && profiling {
		// Where the idle sessions' memory is, and the live state's cost.
		res.live, err = readReleased(gw)
	}
	return res, err
}

// readReleased has a gwprof child (-gateway-bin built from
// bench/internal/gwprof) write its heap and goroutine profiles and return
// its free heap to the OS (SIGHUP), then reads it.
func readReleased(gw *gateway) (*point, error) {
	_ = gw.proc.Signal(syscall.SIGHUP)
	time.Sleep(2 * time.Second)
	p, err := read(gw)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// memoryCells are the per-session RSS, heap in use, stacks and free heap
// kept, as table cells.
func (r idleResult) memoryCells() string {
	kib := func(f func(point) int64) string { return fmt.Sprintf("%.1f KiB", r.per(f)/1024) }
	return kib(func(x point) int64 { return x.rss }) + " | " + kib(func(x point) int64 { return x.heap }) + " | " +
		kib(func(x point) int64 { return x.stack }) + " | " + kib(func(x point) int64 { return x.kept })
}

// idleReport writes the idle-session figures as markdown.
func idleReport(w io.Writer, results []idleResult) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("| Idle sessions | RSS per session | Heap in use per session | Stacks per session | Free heap kept per session | Goroutines per session | FDs per session | RSS before → after |")
	p("|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		p("| %d × %s %s | %s | %.2f | %.2f | %s → %s |", r.n, r.gw, r.proto, r.memoryCells(),
			r.per(func(x point) int64 { return int64(x.goroutines) }), r.per(func(x point) int64 { return int64(x.fds) }),
			mib(r.before.rss), mib(r.after.rss))
		if r.live != nil {
			l := idleResult{n: r.n, before: *r.liveBase, after: *r.live}
			p("| … after a GC that returned the free heap | %s | | | %s → %s |", l.memoryCells(), mib(l.before.rss), mib(l.after.rss))
		}
	}
	p("")
	for _, r := range results {
		p("- %d × %s %s, while idle: %.2f KiB allocated per session per minute, %.0f collections.", r.n, r.gw, r.proto,
			r.quietAlloc/1024/float64(r.n)/r.quiet.Minutes(), r.quietGCs)
	}
	p("")
}

// burst moves n bytes each way through one more connection to the hash
// pod, checked by it, as a session busy before it went idle: each TLS
// connection then keeps a read buffer the size of a full record.
func (s *session) burst(n int, seed uint64, timeout time.Duration) error {
	errS, msg, dataS, err := s.streams(hashPort)
	if err != nil {
		if errS != nil {
			_ = errS.Reset()
			s.conn.RemoveStreams(errS)
		}
		return err
	}
	defer s.conn.RemoveStreams(errS, dataS)
	if err := hashExchange(dataS, n, n, seed); err != nil {
		return err
	}
	if m := waitMessage(msg, timeout); m != "" {
		return fmt.Errorf("error stream: %s", m)
	}
	return nil
}
