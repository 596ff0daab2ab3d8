package memreturn

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestWorth(t *testing.T) {
	const mib = 1 << 20
	idle := Heap{Allocated: 1000 * mib, Live: 40 * mib, Objects: 50 * mib, Free: 5 * mib}
	tests := []struct {
		name      string
		prev, cur Heap
		min       uint64
		want      bool
	}{
		{"should return a quiet heap's garbage and free memory", Heap{Allocated: 999 * mib}, idle, 4 * mib, true},
		{"should leave a busy heap to the runtime", Heap{Allocated: 989 * mib}, idle, 4 * mib, false},
		{"should count a quarter of the live heap as quiet", Heap{Allocated: 990 * mib}, idle, 4 * mib, true},
		{"should not collect for less than the least worth it", Heap{Allocated: 999 * mib}, idle, 16 * mib, false},
		{"should not collect for less than an eighth of the live heap", Heap{Allocated: 999 * mib},
			Heap{Allocated: 1000 * mib, Live: 400 * mib, Objects: 430 * mib, Free: 19 * mib}, 4 * mib, false},
		{"should count free memory alone", Heap{Allocated: 999 * mib},
			Heap{Allocated: 1000 * mib, Live: 40 * mib, Objects: 40 * mib, Free: 5 * mib}, 4 * mib, true},
		{"should not take objects below the live heap for garbage", Heap{Allocated: 999 * mib},
			Heap{Allocated: 1000 * mib, Live: 40 * mib, Objects: 30 * mib, Free: 4 * mib}, 4 * mib, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Worth(tt.prev, tt.cur, tt.min); got != tt.want {
				t.Fatalf("Worth = %v, want %v (reclaimable %d)", got, tt.want, tt.cur.Reclaimable())
			}
		})
	}
}

var keep, sink []byte

// TestReturnsGarbage: with the real runtime, a quiet heap full of garbage
// is collected and its memory returned, once; the counters say so.
func TestReturnsGarbage(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := New(Options{Interval: time.Hour, MinBytes: 4 << 20}, reg)
	keep = make([]byte, 16<<20) // a live heap
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // the garbage stays until check collects it
	for range 64 {
		sink = make([]byte, 1<<20) // 64 MiB of garbage
	}
	sink = nil
	prev := ReadHeap()
	before := prev.Reclaimable()
	if before < 32<<20 {
		t.Fatalf("only %d bytes reclaimable after dropping 64 MiB", before)
	}
	next := r.check(prev)
	if got := testutil.ToFloat64(r.returns); got != 1 {
		t.Fatalf("returns = %v, want 1", got)
	}
	returned := testutil.ToFloat64(r.returned)
	if returned < 32<<20 {
		t.Fatalf("returned %v bytes, want at least the 32 MiB of garbage", returned)
	}
	if next.Free > 4<<20 {
		t.Fatalf("%d bytes still free and kept after the return", next.Free)
	}
	// Nothing more to return: the next look leaves the heap alone.
	r.check(next)
	if got := testutil.ToFloat64(r.returns); got != 1 {
		t.Fatalf("returns = %v after a look with nothing to return, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "pfgateway_memory_returns_total", "pfgateway_memory_returned_bytes_total"); err != nil || n != 2 {
		t.Fatalf("registered series: %d, %v", n, err)
	}
	runtime.KeepAlive(keep)
}

// TestRunStops: Run ends with its context, and does nothing when off.
func TestRunStops(t *testing.T) {
	for _, interval := range []time.Duration{0, time.Millisecond} {
		r := New(Options{Interval: interval, MinBytes: 1 << 62}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		time.Sleep(20 * time.Millisecond)
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("interval %v: Run did not end with its context", interval)
		}
	}
}
