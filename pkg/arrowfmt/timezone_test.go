package arrowfmt_test

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
)

// zoneNames lists every IANA zone in Go's own zoneinfo.zip.
func zoneNames(t *testing.T) []string {
	t.Helper()
	z, err := zip.OpenReader(filepath.Join(runtime.GOROOT(), "lib", "time", "zoneinfo.zip"))
	if err != nil {
		t.Fatalf("Go's zoneinfo.zip: %v", err)
	}
	defer z.Close()
	var names []string
	for _, f := range z.File {
		if !strings.HasSuffix(f.Name, "/") {
			names = append(names, f.Name)
		}
	}
	if len(names) < 300 {
		t.Fatalf("only %d zones in zoneinfo.zip", len(names))
	}
	return names
}

// Issue 10, item 2: a timestamp in a zone whose offset then had seconds
// (Asia/Kolkata before 1942 was +05:21:10) was written with the offset cut
// to minutes and read back seconds off. Every rendered timestamp, in every
// zone from 1850 to 2100, in text and JSON, must parse back (by time.Parse,
// RFC 3339) to the very instant written.
func TestTimestampsReadBackInEveryZone(t *testing.T) {
	zones := zoneNames(t)
	r := rand.New(rand.NewPCG(2026, 11))
	lo, hi := time.Date(1850, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()/1e9, time.Date(2100, 12, 31, 0, 0, 0, 0, time.UTC).UnixNano()/1e9
	const perZone = 48
	checked := 0
	for _, zone := range zones {
		if _, err := time.LoadLocation(zone); err != nil {
			continue // not loadable on this platform
		}
		typ := &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: zone}
		schema := arrow.NewSchema([]arrow.Field{{Name: "ts", Type: typ}}, nil)
		b := array.NewTimestampBuilder(memory.DefaultAllocator, typ)
		want := make([]time.Time, 0, perZone)
		for i := range perZone {
			// Seconds across the range, with nanoseconds; the first two are
			// the issue's own examples' years.
			sec := lo + r.Int64N(hi-lo)
			if i == 0 {
				sec = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
			}
			at := time.Unix(sec, r.Int64N(1e9)).UTC()
			want = append(want, at)
			b.Append(arrow.Timestamp(at.UnixNano()))
		}
		col := b.NewArray()
		b.Release()
		rec := array.NewRecordBatch(schema, []arrow.Array{col}, int64(col.Len()))
		col.Release()

		var text, js bytes.Buffer
		dw, err := arrowfmt.NewDelimited(&text, schema, arrowfmt.DelimitedOptions{})
		if err != nil {
			t.Fatal(err)
		}
		jw, err := arrowfmt.NewJSON(&js, schema, arrowfmt.JSONOptions{Lines: true})
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, rec, dw, jw)
		rec.Release()
		rows, err := csv.NewReader(&text).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(js.String()), "\n")
		for i, at := range want {
			var obj struct{ TS string }
			if err := json.Unmarshal([]byte(lines[i]), &obj); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{rows[i][0], obj.TS} {
				got, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					t.Fatalf("%s: %q does not parse as RFC 3339: %v", zone, s, err)
				}
				if !got.Equal(at) {
					t.Fatalf("%s: %v written as %q reads back as %v, %v off", zone, at, s, got.UTC(), got.Sub(at))
				}
			}
			checked++
		}
	}
	t.Logf("%d instants in %d zones read back exactly", checked, len(zones))
}
