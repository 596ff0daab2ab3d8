package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// maxShown is how many unexpected errors the report prints in full.
const maxShown = 20

// stats collects the results.
type stats struct {
	mu             sync.Mutex
	classes        map[string]int
	paths          map[string]int // clean connections per gateway/protocol
	total, setup   []time.Duration
	payload        int64
	unexpected     int
	shown          []string
	sessions       int
	sessionsFailed int
	hit, survived  int               // stream-aware sessions a backend fault hit; of them, with a clean connection after
	sessionClasses map[string]int    // sessions a backend fault ended or refused
	sessionErr     map[string]string // the first error of each, as seen
	slowest        []result          // the slowest connections of any class
}

// keepSlowest is how many of the slowest connections the report lists.
const keepSlowest = 5

func newStats() *stats {
	return &stats{classes: map[string]int{}, paths: map[string]int{}, sessionClasses: map[string]int{}, sessionErr: map[string]string{}}
}

func (s *stats) add(r result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.classes[r.class]++
	s.payload += r.payload
	if len(s.slowest) < keepSlowest || r.total > s.slowest[len(s.slowest)-1].total {
		i, _ := slices.BinarySearchFunc(s.slowest, r.total, func(x result, t time.Duration) int { return -cmpDur(x.total, t) })
		s.slowest = slices.Insert(s.slowest, i, r)
		s.slowest = s.slowest[:min(len(s.slowest), keepSlowest)]
	}
	switch r.class {
	case classOK:
		s.paths[r.gw+" "+r.proto]++
		s.total = append(s.total, r.total)
		s.setup = append(s.setup, r.setup)
	case classUnexpected:
		s.note(r.err)
	}
}

func cmpDur(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *stats) note(err error) {
	s.unexpected++
	if len(s.shown) < maxShown {
		s.shown = append(s.shown, err.Error())
	}
}

// sessionSurvival counts a stream-aware session a backend fault hit, and
// whether a clean connection began on it after the last hit.
func (s *stats) sessionSurvival(survived bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hit++
	if survived {
		s.survived++
	}
}

func (s *stats) sessionOpened() { s.mu.Lock(); s.sessions++; s.mu.Unlock() }

// sessionOutcome counts a session that a backend fault ended or refused,
// as it should.
func (s *stats) sessionOutcome(class string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessionClasses[class]++
	if _, ok := s.sessionErr[class]; !ok && err != nil {
		s.sessionErr[class] = err.Error()
	}
}

// sessionFailed counts a session that could not be opened: unexpected.
func (s *stats) sessionFailed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessionsFailed++
	s.note(err)
}

func (s *stats) progress() (done, unexpected int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.classes {
		done += n
	}
	return done, s.unexpected
}

func (s *stats) unexpectedCount() int { s.mu.Lock(); defer s.mu.Unlock(); return s.unexpected }

// percentile is the nearest-rank p-th percentile of sorted d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// report writes the run's figures as markdown.
func report(w io.Writer, c *config, s *stats, elapsed time.Duration, smp *sampler, base map[string]point, settled settleResult, bf *backendFaults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	done := 0
	for _, n := range s.classes {
		done += n
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("## Soak: %d forwarded connections", done)
	p("")
	p("```\ngo run ./bench/soak -n %d -sessions %d -streams %d -conns-per-session %d -protocols %s -splice %s -faults %s -fault-rate %g -backend-fault-interval %s -fault-window %s -fault-grace %s -max-payload %d -seed %d\n```",
		c.n, c.sessions, c.streams, c.connsPerSession, joinList(c.protocols), joinList(c.splice), faultList(c.faults), c.faultRate, c.backendInterval, c.faultWindow, c.faultGrace, c.maxPayload, c.seed)
	p("")
	p("| | |")
	p("|---|---|")
	p("| Connections done | %d in %s (%.0f/s) |", done, elapsed.Round(time.Second), float64(done)/elapsed.Seconds())
	p("| Sessions opened | %d (%d could not be opened) |", s.sessions, s.sessionsFailed)
	p("| Payload checked | %s (%.1f MiB/s, both directions) |", mib(s.payload), float64(s.payload)/(1<<20)/elapsed.Seconds())
	p("| **Unexpected errors** | **%d** |", s.unexpected)
	slices.Sort(s.total)
	slices.Sort(s.setup)
	p("| Connection latency, clean connections (p50 / p99 / max) | %s / %s / %s |", ms(percentile(s.total, 50)), ms(percentile(s.total, 99)), ms(percentile(s.total, 100)))
	p("| Stream setup, both streams created (p50 / p99 / max) | %s / %s / %s |", ms(percentile(s.setup, 50)), ms(percentile(s.setup, 99)), ms(percentile(s.setup, 100)))
	p("")
	p("| Outcome | Connections |")
	p("|---|---|")
	for _, k := range sortedKeys(s.classes) {
		p("| %s | %d |", k, s.classes[k])
	}
	p("")
	p("| Slowest connections | Fault, outcome | Gateway, protocol |")
	p("|---|---|---|")
	for _, r := range s.slowest {
		p("| %s (setup %s) | %s, %s | %s %s |", ms(r.total), ms(r.setup), r.fault, r.class, r.gw, r.proto)
	}
	p("")
	if bf != nil {
		counts, severed, errs, startAfter, endAfter := bf.summary()
		p("| Backend faults | Injected |")
		p("|---|---|")
		for _, f := range []fault{faultKubeletRestart, faultBackendCut} {
			if n, ok := counts[f]; ok {
				extra := ""
				if f == faultBackendCut {
					extra = fmt.Sprintf(" (%d TCP connections severed, both ends)", severed)
				}
				p("| %s | %d%s |", f, n, extra)
			}
		}
		p("")
		p("Victims began at most %s and ended at most %s after the end of their fault's injection (bounds: -fault-grace %s, -fault-window %s).", ms(startAfter), ms(endAfter), c.faultGrace, c.faultWindow)
		p("")
		p("Stream-aware sessions with a connection reset by a backend fault: %d; of them, %d carried a later clean (byte-checked) connection, and none was ended by the gateway (that would be unexpected).", s.hit, s.survived)
		for _, e := range errs {
			p("**Could not inject:** %v", e)
		}
		p("")
		if len(s.sessionClasses) > 0 {
			p("| Sessions a backend fault ended or refused (expected) | Sessions | First error |")
			p("|---|---|---|")
			for _, k := range sortedKeys(s.sessionClasses) {
				p("| %s | %d | %s |", k, s.sessionClasses[k], s.sessionErr[k])
			}
			p("")
		}
	}
	p("| Clean connections by gateway and protocol | |")
	p("|---|---|")
	for _, k := range sortedKeys(s.paths) {
		p("| %s | %d |", k, s.paths[k])
	}
	p("")
	p("| Gateway | Goroutines base / max / settled | FDs base / max / settled | RSS base / max / end | Heap in use base / max / end |")
	p("|---|---|---|---|---|")
	for _, name := range c.splice {
		b, mx, last, end := base[name], smp.max[name], settled.last[name], smp.last[name]
		p("| %s | %d / %d / %d | %d / %d / %d | %s / %s / %s | %s / %s / %s |", name,
			b.goroutines, mx.goroutines, last.goroutines, b.fds, mx.fds, last.fds,
			mib(b.rss), mib(mx.rss), mib(end.rss), mib(b.heap), mib(mx.heap), mib(end.heap))
	}
	p("")
	if settled.ok {
		p("Every gateway was back to its goroutine and fd baseline %s after the last session closed.", settled.after.Round(100*time.Millisecond))
	} else {
		p("**A gateway did not return to its goroutine and fd baseline within %s** (slack %d goroutines, %d fds).", c.settle, slackGoroutines, slackFDs)
	}
	if s.unexpected > 0 {
		p("")
		p("Unexpected errors (first %d):", len(s.shown))
		p("")
		for _, e := range s.shown {
			p("- %s", e)
		}
	}
}

// faultList is -faults as the command line needs it (” for none).
func faultList(f []fault) string {
	if len(f) == 0 {
		return "''"
	}
	return faultFlag{&f}.String()
}

func joinList(l []string) string {
	out := ""
	for i, s := range l {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
