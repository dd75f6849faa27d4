package fileset_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/filename"
	"github.com/sluicehq/sluice/pkg/fileset"
	"github.com/sluicehq/sluice/pkg/partition"
	"github.com/sluicehq/sluice/pkg/sampledata"
)

// countingSink is a dirSink that counts the objects open at once.
type countingSink struct {
	dirSink
	mu         sync.Mutex
	open, peak int
}

type countedObject struct {
	fileset.Object
	s *countingSink
}

func (s *countingSink) Create(key string) (fileset.Object, error) {
	o, err := s.dirSink.Create(key)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.open++
	s.peak = max(s.peak, s.open)
	s.mu.Unlock()
	return &countedObject{Object: o, s: s}, nil
}

func (o *countedObject) Close() error { o.s.done(); return o.Object.Close() }
func (o *countedObject) Abort() error { o.s.done(); return o.Object.Abort() }
func (s *countingSink) done() {
	s.mu.Lock()
	s.open--
	s.mu.Unlock()
}

var keyed = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "k", Type: arrow.PrimitiveTypes.Int64},
	{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

// shuffled answers rows rows whose k is id % parts, in random order, in
// batches of size.
func shuffled(t *testing.T, rows, parts, size int, seed uint64) []arrow.RecordBatch {
	t.Helper()
	ids := make([]int64, rows)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	rand.New(rand.NewPCG(seed, 1)).Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	var out []arrow.RecordBatch
	for off := 0; off < rows; off += size {
		b := array.NewRecordBuilder(memory.DefaultAllocator, keyed)
		for _, id := range ids[off:min(rows, off+size)] {
			b.Field(0).(*array.Int64Builder).Append(id)
			b.Field(1).(*array.Int64Builder).Append(id % int64(parts))
			b.Field(2).(*array.StringBuilder).Append("customer " + strconv.FormatInt(id, 10))
		}
		rec := b.NewRecordBatch()
		b.Release()
		t.Cleanup(rec.Release)
		out = append(out, rec)
	}
	return out
}

func writeAll(t *testing.T, w fileset.Files, recs []arrow.RecordBatch) []fileset.File {
	t.Helper()
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	files, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// 10,000 partitions, rows in random order, at most 16 files open and a
// small buffer: every row lands once, in its partition's folder, and no
// more files are open at once than the limit (plus the ones being
// finished).
func TestPartitionedLandsEveryRowOnce(t *testing.T) {
	const rows, parts = 100_000, 10_000
	sink := &countingSink{dirSink: dirSink{dir: t.TempDir()}}
	cfg := fileset.Config{Format: fileset.Delimited, Template: tmpl(t, "{{output_name}}_{{file_number|pad:5}}.csv"), Prefix: "out/",
		Values: filename.Values{Now: when, OutputName: "customers"}, Partition: &partition.Spec{Fields: []partition.Field{{Column: "k"}}},
		MaxOpenFiles: 16, PartitionBuffer: 2 << 20, Delimited: arrowfmt.DelimitedOptions{Header: true}}
	w, err := fileset.Open(keyed, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	files := writeAll(t, w, shuffled(t, rows, parts, 8192, 1))
	if sink.peak > 16+fileset.MaxFinishing {
		t.Errorf("%d files open at once; at most 16 written and %d finishing", sink.peak, fileset.MaxFinishing)
	}
	seen := make([]bool, rows+1)
	total := int64(0)
	for _, f := range files {
		k := strings.TrimPrefix(strings.Split(f.Key, "/")[1], "k=")
		if len(f.Partition) != 1 || f.Partition[0].Name != "k" || f.Partition[0].Text != k {
			t.Fatalf("%s: partition %+v", f.Key, f.Partition)
		}
		b, err := os.ReadFile(filepath.Join(sink.dir, f.Key))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(recs[0], ",") != "id,name" {
			t.Fatalf("%s: header %v (the partition column stays out of the files)", f.Key, recs[0])
		}
		for _, r := range recs[1:] {
			id, _ := strconv.ParseInt(r[0], 10, 64)
			if strconv.FormatInt(id%parts, 10) != k || seen[id] || r[1] != "customer "+r[0] {
				t.Fatalf("%s: row %v (seen before: %v)", f.Key, r, seen[id])
			}
			seen[id] = true
		}
		total += int64(len(recs) - 1)
		if f.Rows != int64(len(recs)-1) {
			t.Errorf("%s: %d rows said, %d written", f.Key, f.Rows, len(recs)-1)
		}
	}
	if total != rows {
		t.Errorf("%d rows landed, want %d", total, rows)
	}
	t.Logf("%d rows in %d partitions: %d files, at most %d open", rows, parts, len(files), sink.peak)
}

// The same input writes the same keys and the same bytes: a rerun lands
// where the first run did.
func TestPartitionedIsDeterministic(t *testing.T) {
	recs := shuffled(t, 50_000, 300, 4096, 7)
	run := func() map[string][32]byte {
		sink := &dirSink{dir: t.TempDir()}
		cfg := fileset.Config{Format: fileset.Parquet, Template: tmpl(t, fileset.DefaultTemplate(fileset.Parquet, 0, 0)), ParquetExtension: true,
			Values: filename.Values{Now: when, OutputName: "customers"}, Partition: &partition.Spec{Fields: []partition.Field{{Column: "k", Transform: partition.Bucket, Buckets: 37}}},
			MaxOpenFiles: 4, PartitionBuffer: 256 << 10, MaxRows: 500}
		w, err := fileset.Open(keyed, cfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][32]byte{}
		for _, f := range writeAll(t, w, recs) {
			b, err := os.ReadFile(filepath.Join(sink.dir, f.Key))
			if err != nil {
				t.Fatal(err)
			}
			out[f.Key] = sha256.Sum256(b)
		}
		return out
	}
	a, b := run(), run()
	if len(a) != len(b) {
		t.Fatalf("%d files, then %d", len(a), len(b))
	}
	for k, sum := range a {
		if b[k] != sum {
			t.Errorf("%s differs between runs", k)
		}
	}
}

// The customer table, every type of it, partitioned by a dictionary
// column and the year of a date, into Parquet: each file reads back with
// the rows of its partition only, and the rows add up.
func TestPartitionedParquetCustomers(t *testing.T) {
	recs := sampledata.All(sampledata.NewCustomer360(nil, 30_000, 1024, 3))
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	sink := &dirSink{dir: t.TempDir()}
	cfg := fileset.Config{Format: fileset.Parquet, Template: tmpl(t, fileset.DefaultTemplate(fileset.Parquet, 0, 0)), ParquetExtension: true,
		Values: filename.Values{Now: when, OutputName: "customers"}, Partition: &partition.Spec{Fields: []partition.Field{{Column: "country"}, {Column: "signup_date", Transform: partition.Year}}, KeepColumns: true},
		MaxOpenFiles: 8, PartitionBuffer: 2 << 20}
	w, err := fileset.Open(recs[0].Schema(), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	files := writeAll(t, w, recs)
	total := int64(0)
	for _, f := range files {
		fh, err := os.Open(filepath.Join(sink.dir, f.Key))
		if err != nil {
			t.Fatal(err)
		}
		pr, err := file.NewParquetReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		fr, err := pqarrow.NewFileReader(pr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := fr.ReadTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total += tbl.NumRows()
		country := f.Partition[0].Text
		col := tbl.Column(tbl.Schema().FieldIndices("country")[0])
		for _, chunk := range col.Data().Chunks() {
			for i := range chunk.Len() {
				got := partition.Default
				if !chunk.IsNull(i) {
					got = chunk.ValueStr(i)
				}
				if got != country {
					t.Fatalf("%s holds a row of country %q", f.Key, got)
				}
			}
		}
		if f.Rows != tbl.NumRows() {
			t.Errorf("%s: %d rows said, %d read", f.Key, f.Rows, tbl.NumRows())
		}
		tbl.Release()
		pr.Close()
	}
	if total != 30_000 {
		t.Errorf("%d rows read back, want 30000", total)
	}
	t.Logf("%d files", len(files))
}

// A partition column the data does not have is refused before anything
// is written.
func TestPartitionedRefusesAnUnknownColumn(t *testing.T) {
	sink := &dirSink{dir: t.TempDir()}
	cfg := fileset.Config{Format: fileset.Delimited, Template: tmpl(t, "{{output_name}}_{{file_number}}.csv"), Values: filename.Values{Now: when, OutputName: "x"},
		Partition: &partition.Spec{Fields: []partition.Field{{Column: "Country"}}}}
	if _, err := fileset.Open(keyed, cfg, sink); err == nil || !strings.Contains(err.Error(), `"Country"`) {
		t.Errorf("an unknown column: %v", err)
	}
	cfg.Template = tmpl(t, "{{output_name}}.csv")
	cfg.Partition.Fields[0].Column = "k"
	if _, err := fileset.Open(keyed, cfg, sink); err == nil {
		t.Error("a template without {{file_number}} was allowed")
	}
	entries, _ := os.ReadDir(sink.dir)
	if len(entries) != 0 {
		t.Errorf("something was written: %v", entries)
	}
}

// BenchmarkPartitionedParquet writes the customer 360 table (1,000,000
// rows) as zstd Parquet into 10 and 1,000 partitions of the customer id's
// bucket, every batch visiting every partition, into a discarding sink:
// the partitioned writer's own cost, beside the same rows unpartitioned.
func BenchmarkPartitionedParquet(b *testing.B) {
	recs := sampledata.All(sampledata.NewCustomer360(nil, 1_000_000, 0, 1))
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	tp, _ := filename.Parse(fileset.DefaultTemplate(fileset.Parquet, 0, 0))
	for _, parts := range []int{0, 10, 1000} {
		b.Run(fmt.Sprintf("partitions=%d", parts), func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				cfg := fileset.Config{Format: fileset.Parquet, Template: tp, ParquetExtension: true, Values: filename.Values{OutputName: "customers"},
					Parquet: arrowfmt.ParquetOptions{Codec: arrowfmt.Zstd}}
				if parts > 0 {
					cfg.Partition = &partition.Spec{Fields: []partition.Field{{Column: "customer_id", Transform: partition.Bucket, Buckets: parts}}}
				}
				w, err := fileset.Open(recs[0].Schema(), cfg, discard{})
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
			b.ReportMetric(1e6*float64(b.N)/time.Since(start).Seconds(), "rows/s")
		})
	}
}

// poolSink's objects take one of a few shared tokens with their first
// byte, as S3 uploads take part buffers from the pool, and give it back
// when idle (unless a write runs), closed or aborted.
type poolSink struct {
	tokens chan struct{}
}

type poolObject struct {
	s       *poolSink
	mu      sync.Mutex
	holding bool
	n       int
}

func (s *poolSink) Create(string) (fileset.Object, error) { return &poolObject{s: s}, nil }

func (o *poolObject) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.holding {
		select {
		case <-o.s.tokens:
		case <-time.After(20 * time.Second):
			return 0, errors.New("waited 20 s for a token: the files that hold them never give them back")
		}
		o.holding = true
	}
	o.n += len(p)
	return len(p), nil
}

func (o *poolObject) Idle() {
	if !o.mu.TryLock() {
		return // a write runs
	}
	defer o.mu.Unlock()
	o.giveBack()
}

func (o *poolObject) giveBack() {
	if o.holding {
		o.s.tokens <- struct{}{}
		o.holding = false
	}
}

func (o *poolObject) Close() error { o.mu.Lock(); defer o.mu.Unlock(); o.giveBack(); return nil }
func (o *poolObject) Abort() error { return o.Close() }

// Open Parquet partition files whose encoding writes beside the caller
// give their tokens back while they wait, so that more files than tokens
// can be open at once: none waits forever for a token an idle file holds.
func TestIdlePartitionFilesHoldNoSharedBuffers(t *testing.T) {
	sink := &poolSink{tokens: make(chan struct{}, 2)}
	sink.tokens <- struct{}{}
	sink.tokens <- struct{}{}
	cfg := fileset.Config{Format: fileset.Parquet, Template: tmpl(t, fileset.DefaultTemplate(fileset.Parquet, 0, 0)), ParquetExtension: true,
		Values: filename.Values{Now: when, OutputName: "customers"}, Partition: &partition.Spec{Fields: []partition.Field{{Column: "k"}}},
		MaxOpenFiles: 6, PartitionBuffer: 6 * (64 << 10)} // row groups of 64 KiB: encoded beside the writing
	w, err := fileset.Open(keyed, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	files := writeAll(t, w, shuffled(t, 120_000, 6, 2048, 3))
	if len(files) < 6 {
		t.Errorf("%d files", len(files))
	}
}
