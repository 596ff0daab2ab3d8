// Package memreturn gives the Go heap's free memory back to the operating
// system while the gateway is quiet.
//
// With the default GOGC the runtime lets the heap grow to about twice what
// is live before it collects, and keeps the freed memory for reuse: a
// gateway whose thousand sessions were set up and then sat idle holds
// their set-up's garbage, ≈ 20 KiB per session, for as long as they stay
// idle (BENCHMARKS.md, "Idle-session memory"). A memory limit (GOMEMLIMIT,
// set from the container's by the gateway) collects it only near the
// limit. The runtime's own scavenger returns only what lies beyond its
// heap goal. So a Returner looks at the heap now and then and, when little
// was allocated since its last look and much is free or garbage, runs the
// one collection that returns it (debug.FreeOSMemory). A busy gateway is
// left to the runtime: its free memory is reused within seconds.
package memreturn

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// Options say when the heap's free memory is returned.
type Options struct {
	// Interval is how often the heap is looked at; 0 turns returning off.
	Interval time.Duration
	// MinBytes is the least free memory and garbage worth a collection.
	MinBytes uint64
}

// NewOptions returns the defaults: a look every 30 s, 4 MiB at least.
func NewOptions() Options { return Options{Interval: 30 * time.Second, MinBytes: 4 << 20} }

// Heap is one look at the heap (runtime/metrics).
type Heap struct {
	Allocated uint64 // allocated since the program started
	Live      uint64 // live after the last collection
	Objects   uint64 // live objects and garbage not yet swept
	Free      uint64 // free and not yet returned to the OS
	Released  uint64 // free and returned to the OS
}

// Reclaimable is what a collection and a scavenge would give back.
func (h Heap) Reclaimable() uint64 { return h.Objects - min(h.Live, h.Objects) + h.Free }

// Worth reports whether returning memory now pays: the gateway allocated
// at most a quarter of its live heap since prev (at that pace the runtime's
// own next collection, due after as much as is live, is several looks
// away, and the memory would not be needed again soon), and at least
// minBytes and an eighth of the live heap can be given back. So a quiet
// gateway's RSS stays within about an eighth of its live heap (or
// minBytes) of what it holds, for a collection now and then: an idle
// session's pings allocate a little.
func Worth(prev, cur Heap, minBytes uint64) bool {
	quiet := cur.Allocated-prev.Allocated <= cur.Live/4
	r := cur.Reclaimable()
	return quiet && r >= minBytes && r >= cur.Live/8
}

var samples = []metrics.Sample{
	{Name: "/gc/heap/allocs:bytes"},
	{Name: "/gc/heap/live:bytes"},
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/free:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
}

// ReadHeap reads the heap's figures from the runtime.
func ReadHeap() Heap {
	s := make([]metrics.Sample, len(samples))
	copy(s, samples)
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return Heap{Allocated: v(0), Live: v(1), Objects: v(2), Free: v(3), Released: v(4)}
}

// Returner returns the heap's free memory when Worth says so.
type Returner struct {
	opts     Options
	read     func() Heap
	free     func()
	returns  prometheus.Counter
	returned prometheus.Counter
}

// New builds a Returner whose counters are registered on reg (if not nil).
func New(o Options, reg prometheus.Registerer) *Returner {
	r := &Returner{
		opts: o, read: ReadHeap, free: debug.FreeOSMemory,
		returns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pfgateway_memory_returns_total",
			Help: "Collections run to return free heap memory to the OS while the gateway was quiet.",
		}),
		returned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pfgateway_memory_returned_bytes_total",
			Help: "Heap memory those collections returned to the OS, in bytes.",
		}),
	}
	if reg != nil {
		reg.MustRegister(r.returns, r.returned)
	}
	return r
}

// Run looks at the heap every Interval until ctx ends.
func (r *Returner) Run(ctx context.Context) {
	if r.opts.Interval <= 0 {
		return
	}
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	prev := r.read()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		prev = r.check(prev)
	}
}

// check is one look: it returns memory if worth it, and the heap to compare
// the next look with.
func (r *Returner) check(prev Heap) Heap {
	cur := r.read()
	if !Worth(prev, cur, r.opts.MinBytes) {
		return cur
	}
	r.free()
	after := r.read()
	returned := after.Released - min(cur.Released, after.Released)
	r.returns.Inc()
	r.returned.Add(float64(returned))
	klog.V(2).InfoS("Returned free heap memory to the OS", "bytes", returned, "reclaimable", cur.Reclaimable(), "live", after.Live)
	return after
}
