package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// allocCounters are a gateway child's cumulative heap allocations, as its
// Go collector reports them on /metrics.
type allocCounters struct{ Mallocs, Bytes float64 }

const (
	metricMallocs    = "go_memstats_mallocs_total"
	metricAllocBytes = "go_memstats_alloc_bytes_total"
)

// scrapeClient keeps its connection to the admin listener alive, so every
// scrape costs the gateway about the same and no connection setup falls
// between two scrapes.
// Without compression: gzip's buffers would be most of a scrape's cost.
var scrapeClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableCompression: true}}

// Allocs scrapes the child's /metrics. ok is false for a child without an
// admin listener (the reference relay).
func (g *gatewayProc) Allocs() (a allocCounters, ok bool, err error) {
	if g.AdminAddr == "" {
		return a, false, nil
	}
	resp, err := scrapeClient.Get("http://" + g.AdminAddr + "/metrics")
	if err != nil {
		return a, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return a, false, fmt.Errorf("%s /metrics: %s", g.Name, resp.Status)
	}
	found := 0
	// The text format: "name value" lines for these unlabelled counters.
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		var dst *float64
		switch {
		case !ok:
			continue
		case name == metricMallocs:
			dst = &a.Mallocs
		case name == metricAllocBytes:
			dst = &a.Bytes
		default:
			continue
		}
		if *dst, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
			return a, false, fmt.Errorf("%s /metrics %s: %w", g.Name, name, err)
		}
		found++
	}
	_, _ = io.Copy(io.Discard, resp.Body) // so the connection is reused
	if err := sc.Err(); err != nil {
		return a, false, err
	}
	if found != 2 {
		return a, false, fmt.Errorf("%s /metrics has no %s or %s", g.Name, metricMallocs, metricAllocBytes)
	}
	return a, true, nil
}

// calibrateScrape measures what one scrape of /metrics allocates in the
// gateway itself: the median difference of back-to-back scrapes. It is
// subtracted from every transfer's figure. The counters move in steps of
// whole spans (the runtime counts a cached span's objects when it swaps the
// span out), hence the median.
func (g *gatewayProc) calibrateScrape() error {
	prev, ok, err := g.Allocs()
	if err != nil || !ok {
		return err
	}
	var ms, bs []float64
	for range 20 {
		a, _, err := g.Allocs()
		if err != nil {
			return err
		}
		ms, bs = append(ms, a.Mallocs-prev.Mallocs), append(bs, a.Bytes-prev.Bytes)
		prev = a
	}
	g.scrapeCost = allocCounters{summarize(ms).Med, summarize(bs).Med}
	return nil
}

// allocProbe brackets a transfer with scrapes of a gateway's allocation
// counters.
type allocProbe struct {
	gw     *gatewayProc
	before allocCounters
	ok     bool
}

// startAllocProbe scrapes gw (nil on the direct path).
func startAllocProbe(gw *gatewayProc) (*allocProbe, error) {
	p := &allocProbe{gw: gw}
	if gw == nil {
		return p, nil
	}
	var err error
	p.before, p.ok, err = gw.Allocs()
	return p, err
}

// finish returns the allocations per MiB for size bytes moved since start,
// less one scrape's, NaN when the path has no counters.
func (p *allocProbe) finish(size int64) (mallocsPerMiB, bytesPerMiB float64, err error) {
	if !p.ok {
		return nan, nan, nil
	}
	c, _, err := p.gw.Allocs()
	if err != nil {
		return nan, nan, err
	}
	cost := p.gw.scrapeCost
	return (c.Mallocs - p.before.Mallocs - cost.Mallocs) / mib(size), (c.Bytes - p.before.Bytes - cost.Bytes) / mib(size), nil
}
