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
}

func (r idleResult) per(f func(point) int64) float64 {
	return float64(f(r.after)-f(r.before)) / float64(r.n)
}

// measureIdle opens n sessions of proto on gw, runs one small clean
// connection on each (so the per-session state a real session reaches,
// header decoders included, exists), leaves them idle and reads the gateway
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
		_ = gw.proc.Signal(syscall.SIGHUP)
		time.Sleep(2 * time.Second)
		base, err := read(gw)
		if err != nil {
			return res, err
		}
		res.liveBase = &base
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
	time.Sleep(r.c.idleQuiet)
	res.after, err = read(gw)
	if err == nil && profiling {
		// A gwprof child (-gateway-bin built from bench/internal/gwprof)
		// writes where the idle sessions' memory is, then collects and
		// returns its free heap to the OS: the live state's cost.
		_ = gw.proc.Signal(syscall.SIGHUP)
		time.Sleep(2 * time.Second)
		var live point
		if live, err = read(gw); err == nil {
			res.live = &live
		}
	}
	return res, err
}

// idleReport writes the idle-session figures as markdown.
func idleReport(w io.Writer, results []idleResult) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("| Idle sessions | RSS per session | Heap in use per session | Stacks per session | Free heap kept per session | Goroutines per session | FDs per session | RSS before → after |")
	p("|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		p("| %d × %s %s | %.1f KiB | %.1f KiB | %.1f KiB | %.1f KiB | %.2f | %.2f | %s → %s |", r.n, r.gw, r.proto,
			r.per(func(x point) int64 { return x.rss })/1024, r.per(func(x point) int64 { return x.heap })/1024,
			r.per(func(x point) int64 { return x.stack })/1024, r.per(func(x point) int64 { return x.kept })/1024,
			r.per(func(x point) int64 { return int64(x.goroutines) }), r.per(func(x point) int64 { return int64(x.fds) }),
			mib(r.before.rss), mib(r.after.rss))
		if r.live != nil {
			l := idleResult{gw: r.gw, proto: r.proto, n: r.n, before: *r.liveBase, after: *r.live}
			p("| … after a GC that returned the free heap | %.1f KiB | %.1f KiB | %.1f KiB | %.1f KiB | | | %s → %s |",
				l.per(func(x point) int64 { return x.rss })/1024, l.per(func(x point) int64 { return x.heap })/1024,
				l.per(func(x point) int64 { return x.stack })/1024, l.per(func(x point) int64 { return x.kept })/1024,
				mib(r.liveBase.rss), mib(r.live.rss))
		}
	}
	p("")
}
