package main

import (
	"fmt"
	"math"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The chart is drawn with gonum.org/v1/plot: grouped bars, legends, axes
// and text in a few lines, pure Go (no cgo, no fonts to install); drawing
// the same with image/png alone would mean hand-rolled text rendering.

// barGroup is one series of a grouped bar chart: a path, one value per
// category.
type barGroup struct {
	name   string
	values []float64
}

// writeChart draws throughput, CPU per GiB and new-connection latency as
// three grouped bar charts, one above the other, into a PNG file.
func (r *results) writeChart(path string) error {
	var cats []string
	for _, mode := range r.Modes {
		for _, dir := range []string{dirDownload, dirUpload} {
			cats = append(cats, modeName(mode)+"\n"+dir)
		}
	}
	rows := r.rows()
	via := func(gw string, f func(row) float64) []float64 {
		var out []float64
		for _, mode := range r.Modes {
			for _, dir := range []string{dirDownload, dirUpload} {
				v := math.NaN()
				for _, x := range rows {
					if x.Mode == mode && x.Direction == dir && x.Gateway == gw {
						v = f(x)
					}
				}
				out = append(out, v)
			}
		}
		return out
	}
	// With -parallel, more categories: the same with n connections at once.
	par := func(p string, f func(sample) float64) []float64 {
		var out []float64
		if r.Parallel < 2 {
			return out
		}
		for _, mode := range r.Modes {
			for _, dir := range []string{dirDownload, dirUpload} {
				out = append(out, summarize(pick(r.ParallelSamples[caseKey{mode, dir, p}], f)).Med)
			}
		}
		return out
	}
	if r.Parallel > 1 {
		for _, c := range slices.Clone(cats) {
			cats = append(cats, fmt.Sprintf("%s ×%d", c, r.Parallel))
		}
	}
	mibps := func(s sample) float64 { return s.MiBps }
	gwCPU := func(s sample) float64 { return s.GatewayCPU }
	var thr, cpu []barGroup
	if len(r.Gateways) > 0 {
		thr = append(thr, barGroup{pathDirect, append(via(r.Gateways[0].Name, func(x row) float64 { return x.Direct.Med }), par(pathDirect, mibps)...)})
	}
	fc, _, _, _, _, _ := r.floorStats()
	floor := make([]float64, len(cats))
	for i := range floor {
		floor[i] = fc.Med
	}
	cpu = append(cpu, barGroup{"TLS floor", floor})
	for _, g := range r.Gateways {
		thr = append(thr, barGroup{g.Name, append(via(g.Name, func(x row) float64 { return x.Via.Med }), par(g.Name, mibps)...)})
		cpu = append(cpu, barGroup{g.Name, append(via(g.Name, func(x row) float64 { return x.GatewayCPU.Med }), par(g.Name, gwCPU)...)})
	}
	plots := []*plot.Plot{
		groupedBars(fmt.Sprintf("Throughput, %s per transfer (median of %d)", sizeString(r.Size), r.Repeat), "MiB/s", cats, thr),
		groupedBars("CPU of the proxy process per GiB moved (TLS floor: one TLS hop)", "CPU-s/GiB", cats, cpu),
	}
	if l := r.Latency; len(l.Samples) > 0 {
		var lcats []string
		var lat []barGroup
		for _, p := range l.Paths {
			g := barGroup{name: p}
			for _, rtt := range l.RTTs {
				for _, mode := range r.Modes {
					for _, q := range []float64{0.5, 0.99} {
						if p == l.Paths[0] {
							lcats = append(lcats, fmt.Sprintf("%s\np%.0f, RTT %s", shortMode(mode), q*100, rtt))
						}
						g.values = append(g.values, ms(percentile(l.Samples[latencyKey{rtt, mode, p}], q)))
					}
				}
			}
			// Session setup to the first echo, when measured.
			for _, mode := range r.Modes {
				if len(r.Setup) > 0 {
					if p == l.Paths[0] {
						lcats = append(lcats, shortMode(mode)+"\nsetup p50")
					}
					g.values = append(g.values, ms(percentile(r.setupTimes(mode, p, false), 0.5)))
				}
			}
			lat = append(lat, g)
		}
		plots = append(plots, groupedBars("New-connection latency over an open forward; session setup to the first echo", "ms", lcats, lat))
	}
	const width, rowHeight = 12 * vg.Inch, 4 * vg.Inch
	img := vgimg.New(width, rowHeight*vg.Length(len(plots)))
	dc := draw.New(img)
	grid := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		grid[i] = []*plot.Plot{p}
	}
	canvases := plot.Align(grid, draw.Tiles{Rows: len(plots), Cols: 1, PadY: vg.Inch / 4, PadTop: vg.Inch / 8, PadRight: vg.Inch / 3}, dc)
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// groupedBars is one bar chart with a group of bars per category, one bar
// per series; a missing figure (NaN) is drawn as no bar.
func groupedBars(title, unit string, cats []string, series []barGroup) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = unit
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.Padding = vg.Points(2)
	n := vg.Length(len(series))
	barW := vg.Points(min(20, 600/float64(max(1, len(series)*len(cats)))))
	for i, s := range series {
		vals := make(plotter.Values, len(cats))
		for j := range cats {
			if j < len(s.values) && !math.IsNaN(s.values[j]) && !math.IsInf(s.values[j], 0) {
				vals[j] = s.values[j]
			}
		}
		bc, err := plotter.NewBarChart(vals, barW)
		if err != nil { // only for negative widths or empty values
			continue
		}
		bc.LineStyle.Width = 0
		bc.Color = plotutil.Color(i)
		bc.Offset = (vg.Length(i) - (n-1)/2) * barW
		p.Add(bc)
		p.Legend.Add(s.name, bc)
	}
	p.NominalX(cats...)
	// Headroom above the highest bar for the legend.
	p.Y.Max *= 1.1 + 0.07*float64(len(series))
	return p
}

// chartPath is where the chart goes: -chart, or -out with .png for .md.
func chartPath(c config) string {
	if c.chart != "" || c.out == "" {
		return c.chart
	}
	base := c.out
	if len(base) > 3 && base[len(base)-3:] == ".md" {
		base = base[:len(base)-3]
	}
	return base + ".png"
}

// shortMode names a mode in the latency panel's narrow categories.
func shortMode(m string) string {
	if m == modeWebSocket {
		return "WS tunnel"
	}
	return modeName(m)
}
