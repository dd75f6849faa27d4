package tracechart

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// A trace of known spans comes out as rows depth first, children by
// start, offsets from the root, parts numbered and failures marked; its
// picture is a PNG as wide as asked and taller with more rows.
func TestRowsAndPicture(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	delivery, parts := tp.Tracer("github.com/sluicehq/sluice/services/delivery"), tp.Tracer("github.com/sluicehq/sluice/pkg/multipart")
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	at := func(ms int) trace.SpanEventOption {
		return trace.WithTimestamp(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	ctx, root := delivery.Start(context.Background(), "Deliver", at(0))
	ctx, run := delivery.Start(ctx, "delivery run", at(5))
	_, p2 := parts.Start(ctx, "upload part", at(40), trace.WithAttributes(attribute.Int("sluice.part.number", 2)))
	_, p1 := parts.Start(ctx, "upload part", at(20), trace.WithAttributes(attribute.Int("sluice.part.number", 1)))
	p1.SetStatus(codes.Error, "SlowDown")
	p1.End(at(60))
	p2.End(at(70))
	run.End(at(90))
	root.End(at(100))
	_, other := delivery.Start(context.Background(), "another trace", at(0))
	other.End(at(1))

	var root0 sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "Deliver" {
			root0 = s
		}
	}
	rows := Rows(root0, rec.Ended())
	want := []Row{
		{Label: "Deliver", Depth: 0, Start: 0, End: 100 * time.Millisecond},
		{Label: "delivery run", Depth: 1, Start: 5 * time.Millisecond, End: 90 * time.Millisecond},
		{Label: "upload part 1", Depth: 2, Start: 20 * time.Millisecond, End: 60 * time.Millisecond, Failed: true},
		{Label: "upload part 2", Depth: 2, Start: 40 * time.Millisecond, End: 70 * time.Millisecond},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %v", rows)
	}
	for i, r := range rows {
		r.Scope = ""
		if r != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, r, want[i])
		}
	}

	sizes := map[int]int{}
	for _, n := range []int{2, 4} {
		var buf bytes.Buffer
		if err := PNG(&buf, "test", rows[:n], 1000); err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(&buf)
		if err != nil {
			t.Fatalf("not a PNG: %v", err)
		}
		if img.Bounds().Dx() != 1000 {
			t.Errorf("width %d, want 1000", img.Bounds().Dx())
		}
		sizes[n] = img.Bounds().Dy()
		if n == 4 && os.Getenv("TRACECHART_OUT") != "" {
			var again bytes.Buffer
			_ = PNG(&again, "test", rows, 1000)
			_ = os.WriteFile(os.Getenv("TRACECHART_OUT"), again.Bytes(), 0o644)
		}
	}
	if sizes[4] <= sizes[2] {
		t.Errorf("heights %v: more rows, no taller", sizes)
	}
	if err := PNG(&bytes.Buffer{}, "empty", nil, 100); err == nil {
		t.Error("an empty trace drew a picture")
	}
}
