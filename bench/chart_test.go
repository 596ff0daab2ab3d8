package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWriteChart draws a chart of made-up results and checks that it is a
// PNG of three panels with something drawn in each.
func TestWriteChart(t *testing.T) {
	r := &results{
		Size: 1 << 30, Repeat: 1, Modes: []string{modeSPDY, modeWebSocket},
		Floor:    []floorSample{{CPUPerGiB: 1.5}},
		Samples:  map[caseKey][]sample{},
		Gateways: []gatewayInfo{{Name: pathAPIServer}, {Name: "opaque", Bin: pathGateway, Variant: variantOpaque}},
		Latency: latencyResults{RTTs: []time.Duration{0}, Paths: []string{pathDirect, pathAPIServer, "opaque"},
			Samples: map[latencyKey][]time.Duration{}},
		Parallel: 4, ParallelSamples: map[caseKey][]sample{}, Setup: map[setupKey][]setupSample{},
		SetupPaths: []string{pathDirect, pathAPIServer, "opaque"},
	}
	for _, mode := range r.Modes {
		for i, path := range r.Latency.Paths {
			for _, dir := range []string{dirDownload, dirUpload} {
				r.Samples[caseKey{mode, dir, path}] = []sample{{MiBps: 100 * float64(i+1), GatewayCPU: float64(i)}}
				r.ParallelSamples[caseKey{mode, dir, path}] = []sample{{MiBps: 150 * float64(i+1), GatewayCPU: float64(i)}}
			}
			r.Latency.Samples[latencyKey{0, mode, path}] = []time.Duration{time.Millisecond, 3 * time.Millisecond}
			r.Setup[setupKey{mode, path}] = []setupSample{{5 * time.Millisecond, 8 * time.Millisecond}}
		}
	}
	file := filepath.Join(t.TempDir(), "chart.png")
	if p := os.Getenv("BENCH_CHART_OUT"); p != "" { // to look at it
		file = p
	}
	if err := r.writeChart(file); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	if b.Dx() < 800 || b.Dy() < 3*b.Dx()/4 {
		t.Fatalf("chart is %v, want at least 800 wide and three panels high", b)
	}
	// Each third of the height holds a panel: it must not be all one colour.
	for panel := range 3 {
		first := img.At(b.Min.X, b.Min.Y+panel*b.Dy()/3)
		varied := false
		for y := b.Min.Y + panel*b.Dy()/3; y < b.Min.Y+(panel+1)*b.Dy()/3 && !varied; y += 4 {
			for x := b.Min.X; x < b.Max.X; x += 4 {
				if img.At(x, y) != first {
					varied = true
					break
				}
			}
		}
		if !varied {
			t.Errorf("panel %d is blank", panel+1)
		}
	}
}

func TestChartPath(t *testing.T) {
	for _, tc := range []struct{ out, chart, want string }{
		{"", "", ""},
		{"BENCH.md", "", "BENCH.png"},
		{"x/table", "", "x/table.png"},
		{"BENCH.md", "c.png", "c.png"},
		{"", "c.png", "c.png"},
	} {
		if got := chartPath(config{out: tc.out, chart: tc.chart}); got != tc.want {
			t.Errorf("chartPath(out %q, chart %q) = %q, want %q", tc.out, tc.chart, got, tc.want)
		}
	}
}

func TestParsePaths(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"direct,floor,apiserver,pfgateway,relay", []string{"direct", "floor", "apiserver", "pfgateway", "relay"}, false},
		{"direct,floor,pfgateway", []string{"direct", "floor", "pfgateway"}, false},
		{"direct,floor", []string{"direct", "floor"}, false},
		{"floor,apiserver", nil, true},          // no direct path
		{"direct,apiserver", nil, true},         // no floor
		{"direct,floor,kas", nil, true},         // unknown
		{"direct,floor,relay,relay", nil, true}, // twice
	} {
		got, err := parsePaths(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parsePaths(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if tc.wantErr {
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("parsePaths(%q) = %v, want %v", tc.in, got, tc.want)
		}
		for _, p := range tc.want {
			if !got[p] {
				t.Errorf("parsePaths(%q) lacks %s", tc.in, p)
			}
		}
	}
}
