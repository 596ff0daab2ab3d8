package main

import "testing"

// BenchmarkTLSFloor is the floor alone: one TLS hop in this process,
// 32 KiB writes. Besides ns/op and MB/s it reports the process's CPU
// time per GiB (user+system), the figure `go run ./bench` divides by.
//
//	go test ./bench -run '^$' -bench TLSFloor -benchtime 4x
func BenchmarkTLSFloor(b *testing.B) {
	const size = 256 << 20
	b.SetBytes(size)
	var cpu float64
	for b.Loop() {
		f, err := measureFloor(size)
		if err != nil {
			b.Fatal(err)
		}
		cpu += f.CPUPerGiB
	}
	b.ReportMetric(cpu/float64(b.N), "CPU-s/GiB")
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "512MiB": 512 << 20, "64KiB": 64 << 10, "1G": 1 << 30, "100MB": 100e6, "4096": 4096, "1.5GiB": 3 << 29} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1MiB", "0", "lots"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): want an error", in)
		}
	}
}
