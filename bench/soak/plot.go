package main

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"os"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// writePlot draws the samples CSV (see sampler) as four curves per gateway
// over the connections done: goroutines, descriptors, RSS and heap in use.
// Flat curves are what a soak must show.
func writePlot(csvPath, pngPath string) error {
	f, err := os.Open(csvPath)
	if err != nil {
		return err
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		return err
	}
	if len(rows) < 2 {
		return fmt.Errorf("%s: no samples", csvPath)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	panels := []struct {
		title, column string
		scale         float64
	}{
		{"Goroutines", "goroutines", 1},
		{"Open file descriptors", "fds", 1},
		{"RSS (MiB)", "rss_bytes", 1.0 / (1 << 20)},
		{"Heap in use (MiB)", "heap_inuse_bytes", 1.0 / (1 << 20)},
	}
	var gws []string
	for _, r := range rows[1:] {
		if gw := r[col["gateway"]]; !slices.Contains(gws, gw) {
			gws = append(gws, gw)
		}
	}
	colors := []color.Color{color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}}
	var plots []*plot.Plot
	for _, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.X.Label.Text = "forwarded connections done (thousands)"
		p.Legend.Top = true
		for i, gw := range gws {
			var pts plotter.XYs
			for _, r := range rows[1:] {
				if r[col["gateway"]] != gw {
					continue
				}
				x, err1 := strconv.ParseFloat(r[col["connections_done"]], 64)
				y, err2 := strconv.ParseFloat(r[col[pn.column]], 64)
				if err1 != nil || err2 != nil {
					return fmt.Errorf("%s: bad row %v", csvPath, r)
				}
				pts = append(pts, plotter.XY{X: x / 1000, Y: y * pn.scale})
			}
			l, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			l.Color = colors[i%len(colors)]
			l.Width = vg.Points(1)
			p.Add(l)
			p.Legend.Add(gw, l)
		}
		p.Y.Min = 0
		plots = append(plots, p)
	}
	const w, h = 12 * vg.Inch, 3 * vg.Inch
	img := vgimg.New(w, h*vg.Length(len(plots)))
	grid := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		grid[i] = []*plot.Plot{p}
	}
	canvases := plot.Align(grid, draw.Tiles{Rows: len(plots), Cols: 1, PadY: vg.Inch / 4, PadTop: vg.Inch / 8, PadRight: vg.Inch / 3}, draw.New(img))
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	out, err := os.Create(pngPath)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
