// Package tracechart draws one trace as a picture: its spans as a tree,
// one row each, indented under their parents, with a bar from each span's
// start to its end on a shared time axis, so that an operator sees at a
// glance which service did what, when, and for how long (the part uploads
// of a delivery overlapping, say). It draws with gonum/plot from spans an
// OpenTelemetry SDK recorded (an in-memory exporter), for places with no
// tracing backend to look at.
package tracechart

import (
	"cmp"
	"errors"
	"fmt"
	"image/color"
	"io"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Row is one span as drawn.
type Row struct {
	// Label is the span's name, with the number of a part upload.
	Label string
	// Depth is how far under the root the span is.
	Depth int
	// Start and End are offsets from the root's start.
	Start, End time.Duration
	// Scope is the instrumentation scope: the service or library that
	// made the span, which picks its colour.
	Scope string
	// Failed is a span whose status is Error.
	Failed bool
}

// Rows orders the spans of the trace rooted at root depth first, children
// by start time, and answers them as rows. Spans of other traces, and
// those whose parent is not among spans, are left out.
func Rows(root sdktrace.ReadOnlySpan, spans []sdktrace.ReadOnlySpan) []Row {
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.SpanContext().TraceID() == root.SpanContext().TraceID() && s.SpanContext().SpanID() != root.SpanContext().SpanID() {
			children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s)
		}
	}
	t0 := root.StartTime()
	var rows []Row
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		label := s.Name()
		for _, kv := range s.Attributes() {
			if kv.Key == "sluice.part.number" {
				label += fmt.Sprintf(" %d", kv.Value.AsInt64())
			}
		}
		rows = append(rows, Row{Label: label, Depth: depth, Start: s.StartTime().Sub(t0), End: s.EndTime().Sub(t0),
			Scope: s.InstrumentationScope().Name, Failed: s.Status().Code == codes.Error})
		kids := children[s.SpanContext().SpanID()]
		slices.SortStableFunc(kids, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	walk(root, 0)
	return rows
}

// colourOf answers which Legend entry a scope is drawn as.
func colourOf(scope string) string {
	for _, l := range Legend[:len(Legend)-1] {
		if strings.Contains(scope, l.Scope) {
			return l.Scope
		}
	}
	return "grpc" // gRPC and the rest
}

// palette colours a scope by what made it.
func palette(scope string) color.Color {
	switch colourOf(scope) {
	case "services/delivery":
		return color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	case "services/credential":
		return color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	case "services/destination":
		return color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}
	case "multipart":
		return color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	case "otelaws":
		return color.RGBA{R: 0xe3, G: 0xb5, B: 0x00, A: 0xff}
	}
	return color.RGBA{R: 0x9a, G: 0x9a, B: 0x9a, A: 0xff}
}

// Legend names the colours.
var Legend = []struct {
	Name  string
	Scope string
}{
	{"delivery service", "services/delivery"},
	{"credential service", "services/credential"},
	{"destination service", "services/destination"},
	{"part uploads", "multipart"},
	{"AWS SDK (S3, STS)", "otelaws"},
	{"gRPC", "grpc"},
}

// bars draws each row on its line: its label, indented by depth, in the
// label column left of the time axis's zero, and its bar.
type bars struct {
	rows []Row
	// labels is the label column's width, in the x axis's milliseconds.
	labels float64
}

func (b bars) Plot(c draw.Canvas, p *plot.Plot) {
	tx, ty := p.Transforms(&c)
	style := p.X.Tick.Label
	style.XAlign, style.YAlign = draw.XLeft, draw.YCenter
	style.Font.Size = vg.Points(8)
	style.Font.Variant = "Sans"
	// The legend, on the band above the first row.
	x, y := tx(0), ty(float64(len(b.rows))+0.2)
	for _, l := range Legend {
		if !slices.ContainsFunc(b.rows, func(r Row) bool { return colourOf(r.Scope) == l.Scope }) {
			continue
		}
		c.FillPolygon(palette(l.Scope), []vg.Point{{X: x, Y: y - 4}, {X: x + 10, Y: y - 4}, {X: x + 10, Y: y + 4}, {X: x, Y: y + 4}})
		c.FillText(style, vg.Point{X: x + 14, Y: y}, l.Name)
		x += 14 + style.Width(l.Name) + 16
	}
	for i, r := range b.rows {
		y := float64(len(b.rows) - 1 - i)
		c.FillText(style, vg.Point{X: c.Min.X + vg.Points(4+9*float64(r.Depth)), Y: ty(y)}, r.Label)
		x0, x1 := tx(ms(r.Start)), tx(ms(r.End))
		if x1-x0 < 1 {
			x1 = x0 + 1 // an instant is still seen
		}
		y0, y1 := ty(y-0.36), ty(y+0.36)
		poly := []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}}
		c.FillPolygon(palette(r.Scope), c.ClipPolygonXY(poly))
		if r.Failed {
			c.StrokeLines(draw.LineStyle{Color: color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, Width: vg.Points(2)},
				c.ClipLinesXY(append(poly, poly[0]))...)
		}
	}
	// Where time starts.
	c.StrokeLine2(draw.LineStyle{Color: color.Gray{Y: 0x80}, Width: vg.Points(0.5)}, tx(0), c.Min.Y, tx(0), c.Max.Y)
}

func (b bars) DataRange() (xmin, xmax, ymin, ymax float64) {
	return -b.labels, b.end(), -0.5, float64(len(b.rows)) + 0.8 // and the legend's band
}

func (b bars) end() float64 {
	var end float64
	for _, r := range b.rows {
		end = max(end, ms(r.End))
	}
	return end
}

// timeTicks are the default ticks from zero on: none in the label column.
type timeTicks struct{}

func (timeTicks) Ticks(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for _, t := range (plot.DefaultTicks{}).Ticks(0, hi) {
		if t.Value >= 0 {
			out = append(out, t)
		}
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// PNG draws rows as a PNG of the given width in pixels, titled title,
// and writes it to w. The height grows with the rows.
func PNG(w io.Writer, title string, rows []Row, width int) error {
	if len(rows) == 0 {
		return errors.New("no spans to draw")
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "milliseconds since the request arrived (outlined red: failed)"
	p.X.Tick.Marker = timeTicks{}
	p.HideY()
	b := bars{rows: rows}
	b.labels = b.end() * 0.7 // the label column: 0.7/1.7 of the width
	p.Add(b)
	p.Title.TextStyle.Font.Variant = "Sans"
	p.X.Label.TextStyle.Font.Variant = "Sans"
	p.X.Tick.Label.Font.Variant = "Sans"
	height := vg.Length(90+19*len(rows)) * vg.Inch / 96
	wt, err := p.WriterTo(vg.Length(width)*vg.Inch/96, cmp.Or(height, vg.Inch), "png")
	if err != nil {
		return fmt.Errorf("draw the trace: %w", err)
	}
	_, err = wt.WriteTo(w)
	return err
}
