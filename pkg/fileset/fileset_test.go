package fileset_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/compression"
	"github.com/sluicehq/sluice/pkg/filename"
	"github.com/sluicehq/sluice/pkg/fileset"
)

// dirSink writes objects as files under a directory.
type dirSink struct {
	dir     string
	mu      sync.Mutex
	aborted []string
	failAt  int64 // fail writes past this many bytes, when > 0
}

type dirObject struct {
	*os.File
	sink *dirSink
	key  string
	n    int64
}

func (s *dirSink) Create(key string) (fileset.Object, error) {
	path := filepath.Join(s.dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	return &dirObject{File: f, sink: s, key: key}, err
}

func (o *dirObject) Write(p []byte) (int, error) {
	if o.sink.failAt > 0 && o.n+int64(len(p)) > o.sink.failAt {
		return 0, errors.New("injected write failure")
	}
	o.n += int64(len(p))
	return o.File.Write(p)
}

func (o *dirObject) Abort() error {
	o.sink.mu.Lock()
	o.sink.aborted = append(o.sink.aborted, o.key)
	o.sink.mu.Unlock()
	o.File.Close()
	return os.Remove(o.File.Name())
}

var schema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

// batches answers rows rows with ids 1..rows in batches of size.
func batches(t *testing.T, rows, size int) []arrow.RecordBatch {
	t.Helper()
	var out []arrow.RecordBatch
	for id := 1; id <= rows; {
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		for n := 0; n < size && id <= rows; n++ {
			b.Field(0).(*array.Int64Builder).Append(int64(id))
			b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("customer, number %d", id))
			id++
		}
		rec := b.NewRecordBatch()
		b.Release()
		t.Cleanup(rec.Release)
		out = append(out, rec)
	}
	return out
}

func tmpl(t *testing.T, s string) *filename.Template {
	t.Helper()
	tp, err := filename.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func write(t *testing.T, cfg fileset.Config, sink fileset.Sink, recs []arrow.RecordBatch) []fileset.File {
	t.Helper()
	w, err := fileset.New(schema, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	return writeAll(t, w, recs)
}

var when = time.Date(2026, 3, 8, 9, 30, 0, 0, time.UTC)

func TestSplitByRowsCSVGzip(t *testing.T) {
	sink := &dirSink{dir: t.TempDir()}
	files := write(t, fileset.Config{
		Format: fileset.Delimited, Delimited: arrowfmt.DelimitedOptions{Header: true}, Compression: compression.Gzip,
		Template: tmpl(t, "{{output_name}}_{{now|format:'yyyyMMdd'}}_{{file_number|pad:3}}.csv.gz"), Prefix: "exports/",
		Values: filename.Values{Now: when, OutputName: "c360"}, MaxRows: 250,
	}, sink, batches(t, 600, 170))
	var keys []string
	next := int64(1)
	for _, f := range files {
		keys = append(keys, fmt.Sprintf("%s:%d", f.Key, f.Rows))
		raw, err := os.ReadFile(filepath.Join(sink.dir, f.Key))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(raw)) != f.Bytes {
			t.Fatalf("%s: %d bytes on disk, %d reported", f.Key, len(raw), f.Bytes)
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		records, err := csv.NewReader(zr).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if records[0][0] != "id" || int64(len(records)-1) != f.Rows {
			t.Fatalf("%s: header %v, %d rows, %d reported", f.Key, records[0], len(records)-1, f.Rows)
		}
		for _, r := range records[1:] {
			if r[0] != strconv.FormatInt(next, 10) {
				t.Fatalf("%s: id %s, want %d", f.Key, r[0], next)
			}
			next++
		}
	}
	want := "exports/c360_20260308_001.csv.gz:250 exports/c360_20260308_002.csv.gz:250 exports/c360_20260308_003.csv.gz:100"
	if got := strings.Join(keys, " "); got != want {
		t.Fatalf("files %s, want %s", got, want)
	}
}

func TestParquetPartsFolder(t *testing.T) {
	sink := &dirSink{dir: t.TempDir()}
	files := write(t, fileset.Config{
		Format: fileset.Parquet, Template: tmpl(t, "{{output_name}}/part-{{file_number|pad:5}}.parquet"),
		Values: filename.Values{Now: when, OutputName: "audience"}, MaxRows: 400,
	}, sink, batches(t, 1000, 300))
	if len(files) != 3 || files[2].Key != "audience/part-00003.parquet" {
		t.Fatalf("files %v", files)
	}
	next := int64(1)
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(sink.dir, f.Key))
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := pqarrow.ReadTable(context.Background(), bytes.NewReader(raw), nil, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatalf("%s: %v", f.Key, err)
		}
		if tbl.NumRows() != f.Rows {
			t.Fatalf("%s: %d rows, %d reported", f.Key, tbl.NumRows(), f.Rows)
		}
		for _, chunk := range tbl.Column(0).Data().Chunks() {
			for _, id := range chunk.(*array.Int64).Int64Values() {
				if id != next {
					t.Fatalf("%s: id %d, want %d", f.Key, id, next)
				}
				next++
			}
		}
		tbl.Release()
	}
	if next != 1001 {
		t.Fatalf("read %d rows back, want 1000", next-1)
	}
}

func TestDefaultTemplatesAndParquetExtension(t *testing.T) {
	for _, tc := range []struct {
		format fileset.Format
		delim  rune
		ext    bool
		want   string
	}{
		{fileset.Parquet, 0, true, "out/part-00001.parquet"},
		{fileset.Parquet, 0, false, "out/part-00001"},
		{fileset.Delimited, ',', false, "out_00001.csv"},
		{fileset.Delimited, '\t', false, "out_00001.tsv"},
		{fileset.Delimited, '|', false, "out_00001.psv"},
		{fileset.Delimited, ';', false, "out_00001.txt"},
		{fileset.JSON, 0, false, "out_00001.json"},
		{fileset.NDJSON, 0, false, "out_00001.ndjson"},
	} {
		sink := &dirSink{dir: t.TempDir()}
		files := write(t, fileset.Config{Format: tc.format, Delimited: arrowfmt.DelimitedOptions{Delimiter: tc.delim},
			Template: tmpl(t, fileset.DefaultTemplate(tc.format, tc.delim, compression.None)), ParquetExtension: tc.ext,
			Compression: compression.Gzip, Values: filename.Values{OutputName: "out"}, MaxRows: 1000}, sink, batches(t, 10, 10))
		if len(files) != 1 || files[0].Key != tc.want {
			t.Fatalf("format %d: files %v, want %s (compression adds no extension)", tc.format, files, tc.want)
		}
	}
}

func TestSplitByBytes(t *testing.T) {
	sink := &dirSink{dir: t.TempDir()}
	const limit = 64 << 10
	files := write(t, fileset.Config{
		Format: fileset.NDJSON, Template: tmpl(t, "part-{{file_number}}.ndjson"), MaxBytes: limit,
	}, sink, batches(t, 20000, 5000))
	if len(files) < 5 {
		t.Fatalf("%d files for about 1 MB at 64 KiB each", len(files))
	}
	next := 1
	for i, f := range files {
		if i < len(files)-1 && f.Bytes < limit {
			t.Fatalf("%s has %d bytes, under the %d limit, yet a next file was cut", f.Key, f.Bytes, limit)
		}
		raw, _ := os.ReadFile(filepath.Join(sink.dir, f.Key))
		for _, line := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
			var row struct{ ID int }
			if err := json.Unmarshal([]byte(line), &row); err != nil || row.ID != next {
				t.Fatalf("%s: %q, want id %d", f.Key, line, next)
			}
			next++
		}
	}
	if next != 20001 {
		t.Fatalf("read back %d rows, want 20000", next-1)
	}
}

func TestEmptyStreamWritesOneFile(t *testing.T) {
	sink := &dirSink{dir: t.TempDir()}
	files := write(t, fileset.Config{Format: fileset.Delimited, Delimited: arrowfmt.DelimitedOptions{Header: true},
		Template: tmpl(t, "empty_{{file_number}}.csv"), MaxRows: 10}, sink, nil)
	raw, _ := os.ReadFile(filepath.Join(sink.dir, "empty_1.csv"))
	if len(files) != 1 || files[0].Rows != 0 || string(raw) != "id,name\n" {
		t.Fatalf("files %v, content %q", files, raw)
	}
}

func TestSplitNeedsFileNumber(t *testing.T) {
	_, err := fileset.New(schema, fileset.Config{Format: fileset.JSON, Template: tmpl(t, "all.json"), MaxRows: 5}, &dirSink{dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "{{file_number}}") {
		t.Fatalf("got %v", err)
	}
}

// A failing object is aborted, not left half written.
func TestWriteFailureAbortsTheObject(t *testing.T) {
	sink := &dirSink{dir: t.TempDir(), failAt: 1000}
	w, err := fileset.New(schema, fileset.Config{Format: fileset.Delimited, Template: tmpl(t, "f.csv")}, sink)
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	for _, rec := range batches(t, 100000, 50000) {
		if werr = w.Write(rec); werr != nil {
			break
		}
	}
	if werr == nil {
		_, werr = w.Close()
	}
	if werr == nil || !strings.Contains(werr.Error(), "injected") {
		t.Fatalf("got %v, want the injected failure", werr)
	}
	if len(sink.aborted) != 1 || sink.aborted[0] != "f.csv" {
		t.Fatalf("aborted %v", sink.aborted)
	}
	if _, err := os.Stat(filepath.Join(sink.dir, "f.csv")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the failed object is still there: %v", err)
	}
}

// With files encoded on their own goroutines, a failing object still
// surfaces its error and is aborted.
func TestConcurrentFailureAborts(t *testing.T) {
	sink := &dirSink{dir: t.TempDir(), failAt: 2000}
	w, err := fileset.New(schema, fileset.Config{Format: fileset.Delimited, Template: tmpl(t, "f{{file_number}}.csv"), MaxRows: 5000, Concurrency: 2}, sink)
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	for _, rec := range batches(t, 30000, 3000) {
		if werr = w.Write(rec); werr != nil {
			break
		}
	}
	if werr == nil {
		_, werr = w.Close()
	} else {
		w.Abort()
	}
	if werr == nil || !strings.Contains(werr.Error(), "injected") {
		t.Fatalf("got %v, want the injected failure", werr)
	}
	if len(sink.aborted) == 0 {
		t.Fatal("no object was aborted")
	}
	for _, k := range sink.aborted {
		if _, err := os.Stat(filepath.Join(sink.dir, k)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s was aborted but is still there", k)
		}
	}
}

// discard is a sink that counts and drops bytes.
type discard struct{}

type discardObject struct{}

func (discard) Create(string) (fileset.Object, error) { return discardObject{}, nil }
func (discardObject) Write(p []byte) (int, error)     { return len(p), nil }
func (discardObject) Close() error                    { return nil }
func (discardObject) Abort() error                    { return nil }

// BenchmarkParquetParts writes 1,000,000 rows as Parquet part files of
// 125,000 rows, one file at a time and two at once, and reports rows/s:
// the second figure is what the second core adds.
func BenchmarkParquetParts(b *testing.B) {
	const rows = 1_000_000
	sch := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "email", Type: arrow.BinaryTypes.String},
		{Name: "score", Type: arrow.PrimitiveTypes.Float64},
		{Name: "seen", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}},
		{Name: "age", Type: arrow.PrimitiveTypes.Int32},
		{Name: "city", Type: arrow.BinaryTypes.String},
		{Name: "opted_in", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "orders", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	var recs []arrow.RecordBatch
	for id := 0; id < rows; {
		bl := array.NewRecordBuilder(memory.DefaultAllocator, sch)
		for n := 0; n < 65536 && id < rows; n++ {
			bl.Field(0).(*array.Int64Builder).Append(int64(id))
			bl.Field(1).(*array.StringBuilder).Append("customer" + strconv.Itoa(id) + "@example.com")
			bl.Field(2).(*array.Float64Builder).Append(float64(id%977) / 7)
			bl.Field(3).(*array.TimestampBuilder).Append(arrow.Timestamp(1.7e15 + int64(id)*1e6))
			bl.Field(4).(*array.Int32Builder).Append(int32(18 + id%70))
			bl.Field(5).(*array.StringBuilder).Append([]string{"Seattle", "Paris", "Lagos", "Tokyo"}[id%4])
			bl.Field(6).(*array.BooleanBuilder).Append(id%3 == 0)
			bl.Field(7).(*array.Int64Builder).Append(int64(id % 200))
			id++
		}
		recs = append(recs, bl.NewRecordBatch())
		bl.Release()
	}
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	tp, _ := filename.Parse("part-{{file_number|pad:5}}.parquet")
	for _, conc := range []int{1, 2} {
		b.Run(fmt.Sprintf("files-at-once=%d", conc), func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				w, err := fileset.New(sch, fileset.Config{Format: fileset.Parquet, Template: tp, MaxRows: 125_000, Concurrency: conc}, discard{})
				if err != nil {
					b.Fatal(err)
				}
				for _, rec := range recs {
					if err := w.Write(rec); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/time.Since(start).Seconds(), "rows/s")
		})
	}
}

// Issue 10, item 6: the default names of a split output sort in file
// order, so that a glob reads them in order (out_10 used to sort before
// out_2); a user's own template is kept as written.
func TestDefaultFileNumbersSort(t *testing.T) {
	for _, f := range []fileset.Format{fileset.Delimited, fileset.JSON, fileset.NDJSON, fileset.Parquet} {
		tmpl, err := filename.Parse(fileset.DefaultTemplate(f, 0, compression.None))
		if err != nil {
			t.Fatal(err)
		}
		c := fileset.Config{Format: f, Template: tmpl, Values: filename.Values{OutputName: "out"}}
		var keys []string
		for n := 1; n <= 120; n++ {
			keys = append(keys, c.Key(n))
		}
		if !slices.IsSorted(keys) {
			t.Errorf("format %d: default keys do not sort in file order: %v ... %v", f, keys[:3], keys[8:11])
		}
	}
	own, _ := filename.Parse("part_{{file_number}}.csv")
	c := fileset.Config{Format: fileset.Delimited, Template: own}
	if got := c.Key(7); got != "part_7.csv" {
		t.Errorf("a user's template became %s", got)
	}
}

// Issue 10, item 7: a 200,000-byte limit produced 880 KB files, because
// files were cut only between 4,096-row chunks. Now a text file passes its
// limit by at most one row, with narrow rows and with very wide ones.
func TestSplitByBytesOvershootsByAtMostARow(t *testing.T) {
	const limit = 200_000
	for _, width := range []int{8, 5000} {
		for _, format := range []fileset.Format{fileset.Delimited, fileset.NDJSON} {
			sink := &dirSink{dir: t.TempDir()}
			var recs []arrow.RecordBatch
			pad := strings.Repeat("w", width)
			for id := 1; id <= 60_000*8/(width+8); {
				b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
				for n := 0; n < 10_000 && id <= 60_000*8/(width+8); n++ {
					b.Field(0).(*array.Int64Builder).Append(int64(id))
					b.Field(1).(*array.StringBuilder).Append(pad)
					id++
				}
				rec := b.NewRecordBatch()
				b.Release()
				t.Cleanup(rec.Release)
				recs = append(recs, rec)
			}
			files := write(t, fileset.Config{Format: format, Template: tmpl(t, "part-{{file_number}}"), MaxBytes: limit}, sink, recs)
			row := int64(width + 40) // one row with its separators, generously
			if len(files) < 2 {
				t.Fatalf("width %d, format %d: %d files", width, format, len(files))
			}
			for i, f := range files {
				if f.Bytes > limit+row {
					t.Errorf("width %d, format %d: %s has %d bytes, over the %d limit by more than a row", width, format, f.Key, f.Bytes, limit)
				}
				if i < len(files)-1 && f.Bytes < limit {
					t.Errorf("width %d, format %d: %s has %d bytes, yet a next file was cut", width, format, f.Key, f.Bytes)
				}
			}
		}
	}
}
