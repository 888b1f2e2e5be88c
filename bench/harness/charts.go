package harness

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// dutColors keeps a DUT's colour the same in every chart.
var dutColors = map[string]color.Color{
	L2fwd:  color.RGBA{R: 0x66, G: 0x66, B: 0x66, A: 0xff},
	Xnat:   color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	Kernel: color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
}

func dutColor(d string) color.Color {
	if c, ok := dutColors[d]; ok {
		return c
	}
	return color.Black
}

// Charts draws throughput.png and latency.png into dir.
func Charts(r *Results, dir string) error {
	if len(r.Cells) == 0 {
		// A run of other scenarios only (-cells=false): nothing to draw.
		return nil
	}
	if err := throughputChart(r, filepath.Join(dir, "throughput.png")); err != nil {
		return fmt.Errorf("throughput chart: %w", err)
	}
	if err := latencyChart(r, filepath.Join(dir, "latency.png")); err != nil {
		return fmt.Errorf("latency chart: %w", err)
	}
	return nil
}

// throughputChart: zero-loss rate (and, dashed, the maximum forwarded
// rate) against the number of flows, one panel per frame size, one colour
// per DUT.
func throughputChart(r *Results, path string) error {
	sizes := r.Settings.Sizes
	if len(sizes) == 0 {
		return fmt.Errorf("no frame sizes")
	}
	var flowTicks []plot.Tick
	for _, f := range r.Settings.Flows {
		flowTicks = append(flowTicks, plot.Tick{Value: float64(f), Label: FlowLabel(f)})
	}
	row := make([]*plot.Plot, len(sizes))
	for i, size := range sizes {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("Throughput, %s frames", SizeLabel(size))
		p.X.Label.Text = "flows"
		p.Y.Label.Text = "Mpps"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.ConstantTicks(flowTicks)
		p.Y.Min = 0
		p.Legend.Left = true // rates fall with flows: the lower left is free
		p.Add(plotter.NewGrid())
		for _, d := range r.Settings.DUTs {
			var zl, mx plotter.XYs
			for _, f := range r.Settings.Flows {
				c := FindCell(r, d, f, size)
				if c == nil {
					continue
				}
				zl = append(zl, plotter.XY{X: float64(f), Y: c.ZeroLossPPS / 1e6})
				if c.Max != nil {
					mx = append(mx, plotter.XY{X: float64(f), Y: c.Max.ForwardedPPS / 1e6})
				}
			}
			if len(zl) == 0 {
				continue
			}
			if err := addDUTLine(p, d, d+" zero loss", zl); err != nil {
				return err
			}
			if len(mx) > 0 {
				m, err := plotter.NewLine(mx)
				if err != nil {
					return err
				}
				m.Color = dutColor(d)
				m.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
				p.Add(m)
				p.Legend.Add(d+" max forwarded", m)
			}
		}
		row[i] = p
	}
	return savePlots([][]*plot.Plot{row}, vg.Length(len(sizes))*14*vg.Centimeter, 11*vg.Centimeter, path)
}

// Percentiles on a "nines" scale, -log10(1-q): 50% at 0.3, 90% at 1, 99%
// at 2, 99.9% at 3; the minimum sits at 0 and the maximum one step above
// p99.9, at 4.
var percentileTicks = []plot.Tick{
	{Value: 0, Label: "min"}, {Value: nines(0.5), Label: "50%"}, {Value: 1, Label: "90%"},
	{Value: 2, Label: "99%"}, {Value: 3, Label: "99.9%"}, {Value: 4, Label: "max"},
}

func nines(q float64) float64 { return -math.Log10(1 - q) }

// addDUTLine adds xys to p as a solid line with points in DUT d's colour,
// named label in the legend: how every chart draws a measured series.
func addDUTLine(p *plot.Plot, d, label string, xys plotter.XYs) error {
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color, pts.Color = dutColor(d), dutColor(d)
	l.Width = vg.Points(1.5)
	p.Add(l, pts)
	p.Legend.Add(label, l, pts)
	return nil
}

// latencyChart: one panel per scenario with a latency trial, a CDF per
// DUT through the recorded percentiles, latency on a log axis.
func latencyChart(r *Results, path string) error {
	var plots []*plot.Plot
	for _, fs := range r.scenarios() {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("Latency CDF, %s flows, %s, %.0f%% load", FlowLabel(fs.flows), SizeLabel(fs.size), 100*r.Settings.LatencyLoad)
		p.X.Label.Text = "one-way latency (µs)"
		p.Y.Label.Text = "cumulative share (nines scale)"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Tick.Marker = plot.ConstantTicks(percentileTicks)
		p.Y.Min, p.Y.Max = 0, 4.2
		p.Legend.Top = true
		p.Legend.Left = true
		p.Add(plotter.NewGrid())
		n := 0
		for _, d := range r.Settings.DUTs {
			c := FindCell(r, d, fs.flows, fs.size)
			if c == nil || c.Latency == nil || c.Latency.Latency == nil || c.Latency.Latency.Samples == 0 {
				continue
			}
			l := c.Latency.Latency
			xys := plotter.XYs{
				{X: us(l.Min), Y: 0}, {X: us(l.P50), Y: nines(0.5)}, {X: us(l.P90), Y: 1},
				{X: us(l.P99), Y: 2}, {X: us(l.P999), Y: 3}, {X: us(l.Max), Y: 4},
			}
			for i := range xys {
				xys[i].X = math.Max(xys[i].X, 0.001) // a log axis needs > 0
			}
			if err := addDUTLine(p, d, d, xys); err != nil {
				return err
			}
			n++
		}
		if n > 0 {
			plots = append(plots, p)
		}
	}
	if len(plots) == 0 {
		p := plot.New()
		p.Title.Text = "no latency trials in this run"
		plots = append(plots, p)
	}
	cols := min(2, len(plots))
	rows := (len(plots) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, p := range plots {
		grid[i/cols][i%cols] = p
	}
	return savePlots(grid, vg.Length(cols)*13*vg.Centimeter, vg.Length(rows)*9*vg.Centimeter, path)
}

// savePlots draws a grid of plots (nil cells stay empty) into a PNG.
func savePlots(grid [][]*plot.Plot, w, h vg.Length, path string) error {
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(110))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	t := draw.Tiles{
		Rows: len(grid), Cols: len(grid[0]),
		PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 6,
		PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3,
	}
	canvases := plot.Align(grid, t, dc)
	for i := range grid {
		for j, p := range grid[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
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
