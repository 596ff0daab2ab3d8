package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A gateway is back to its baseline when it holds at most this many more
// goroutines and descriptors than before the run: the metrics scrape's
// keep-alive connection and the runtime's own come and go.
const (
	slackGoroutines = 4
	slackFDs        = 2
)

// point is one sample of one gateway.
type point struct {
	goroutines, fds int
	rss, heap       int64
	stack           int64 // goroutine stacks in use
	kept            int64 // free heap the runtime has not returned to the OS
}

// sampler reads every gateway once a second: goroutines and heap in use
// from its /metrics (go_goroutines, go_memstats_heap_inuse_bytes), open
// descriptors from /proc/PID/fd, VmRSS from /proc/PID/status. Each sample
// is a CSV row when -samples is set.
type sampler struct {
	gws   []*gateway
	r     *runner
	start time.Time
	csv   *bufio.Writer
	file  *os.File
	done  chan struct{}
	wg    sync.WaitGroup

	mu        sync.Mutex
	max, last map[string]point
	firstErr  error
	first     map[string]point
}

var scrapeClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableCompression: true}}

func startSampler(path string, gws []*gateway, r *runner) (*sampler, error) {
	s := &sampler{gws: gws, r: r, start: time.Now(), done: make(chan struct{}), max: map[string]point{}, last: map[string]point{}}
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		s.file, s.csv = f, bufio.NewWriter(f)
		fmt.Fprintln(s.csv, "elapsed_s,gateway,connections_done,unexpected,sessions_open,goroutines,fds,rss_bytes,heap_inuse_bytes")
	}
	s.first = s.sample() // the baseline, at 0 s
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s, nil
}

// sample reads every gateway once and records the points.
func (s *sampler) sample() map[string]point {
	done, unexpected := s.r.st.progress()
	out := map[string]point{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, gw := range s.gws {
		p, err := read(gw)
		if err != nil {
			if s.firstErr == nil {
				s.firstErr = fmt.Errorf("sampling %s: %w", gw.name, err)
			}
			continue
		}
		out[gw.name] = p
		s.last[gw.name] = p
		m := s.max[gw.name]
		s.max[gw.name] = point{max(m.goroutines, p.goroutines), max(m.fds, p.fds), max(m.rss, p.rss), max(m.heap, p.heap), max(m.stack, p.stack), max(m.kept, p.kept)}
		if s.csv != nil {
			fmt.Fprintf(s.csv, "%.1f,%s,%d,%d,%d,%d,%d,%d,%d\n", time.Since(s.start).Seconds(), gw.name, done, unexpected, s.r.open.Load(), p.goroutines, p.fds, p.rss, p.heap)
		}
	}
	return out
}

func read(gw *gateway) (point, error) {
	var p point
	var err error
	if p.fds, err = gw.proc.FDs(); err != nil {
		return p, err
	}
	if p.rss, _, err = gw.proc.Memory(); err != nil {
		return p, err
	}
	m, err := scrape(gw.proc.AdminAddr, "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes",
		"go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes")
	if err != nil {
		return p, err
	}
	p.goroutines, p.heap, p.stack = int(m[0]), int64(m[1]), int64(m[2])
	p.kept = int64(m[3] - m[4])
	return p, nil
}

// scrape reads unlabelled gauges from a /metrics text exposition.
func scrape(addr string, names ...string) ([]float64, error) {
	resp, err := scrapeClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out, found := make([]float64, len(names)), 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		for i, n := range names {
			if name == n {
				if out[i], err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
					return nil, fmt.Errorf("%s: %w", n, err)
				}
				found++
			}
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body) // keep the connection
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if found != len(names) {
		return nil, fmt.Errorf("/metrics lacks one of %v", names)
	}
	return out, nil
}

// baseline is each gateway's sample before the run.
func (s *sampler) baseline() map[string]point { return s.first }

// settleResult says whether the gateways went back to their baseline.
type settleResult struct {
	ok    bool
	after time.Duration
	last  map[string]point
}

// settle samples until every gateway is within the slack of its baseline,
// at most d.
func (s *sampler) settle(base map[string]point, d time.Duration) settleResult {
	start := time.Now()
	for {
		now := s.sample()
		ok := len(now) == len(s.gws)
		for name, p := range now {
			b := base[name]
			ok = ok && p.goroutines <= b.goroutines+slackGoroutines && p.fds <= b.fds+slackFDs
		}
		if ok || time.Since(start) > d {
			return settleResult{ok: ok, after: time.Since(start), last: now}
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (s *sampler) stop() {
	close(s.done)
	s.wg.Wait()
	if s.csv != nil {
		if err := errors.Join(s.csv.Flush(), s.file.Close()); err != nil && s.firstErr == nil {
			s.firstErr = err
		}
	}
}

func (s *sampler) err() error { s.mu.Lock(); defer s.mu.Unlock(); return s.firstErr }
