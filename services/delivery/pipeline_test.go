package delivery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/compression"
	"github.com/sluicehq/sluice/pkg/filename"
	"github.com/sluicehq/sluice/pkg/fileset"
	"github.com/sluicehq/sluice/pkg/sampledata"
)

// memSink keeps objects in memory, as the S3 sink keeps them in a bucket.
type memSink struct {
	mu      sync.Mutex
	objects map[string][]byte
	open    int
}

func newMemSink() *memSink { return &memSink{objects: map[string][]byte{}} }

func (s *memSink) Create(key string) (fileset.Object, error) {
	s.mu.Lock()
	s.open++
	s.mu.Unlock()
	return &memObject{s: s, key: key}, nil
}

func (s *memSink) landed(key string) landed {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.objects[key]
	sum := sha256.Sum256(b)
	return landed{bytes: int64(len(b)), parts: 1, sha256: hex.EncodeToString(sum[:])}
}

type memObject struct {
	s    *memSink
	key  string
	buf  bytes.Buffer
	done bool // closed or aborted: a second Abort is a no-op, as on S3
}

func (o *memObject) Write(p []byte) (int, error) { return o.buf.Write(p) }

func (o *memObject) Close() error {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	o.s.objects[o.key] = o.buf.Bytes()
	o.s.open--
	o.done = true
	return nil
}

func (o *memObject) Abort() error {
	o.s.mu.Lock()
	defer o.s.mu.Unlock()
	if !o.done {
		o.s.open--
		o.done = true
	}
	return nil
}

// outputs are the pipelines the fuzz target runs each input through.
func outputs(t testing.TB) map[string]fileset.Config {
	tmpl := func(s string) *filename.Template {
		tp, err := filename.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return tp
	}
	return map[string]fileset.Config{
		"csv-gzip": {Format: fileset.Delimited, Delimited: arrowfmt.DelimitedOptions{Header: true}, Compression: compression.Gzip,
			Template: tmpl("out_{{file_number}}.csv.gz"), MaxRows: 50, Concurrency: 2},
		"ndjson":  {Format: fileset.NDJSON, Template: tmpl("out_{{file_number}}.ndjson"), MaxBytes: 4096},
		"parquet": {Format: fileset.Parquet, Parquet: arrowfmt.ParquetOptions{Codec: arrowfmt.Snappy}, Template: tmpl("out/part-{{file_number}}.parquet")},
	}
}

func ipcStream(t testing.TB, schema *arrow.Schema, recs []arrow.RecordBatch, opts ...ipc.Option) []byte {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, append([]ipc.Option{ipc.WithSchema(schema)}, opts...)...)
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The pipeline delivers what arrives and, whatever fails, leaves no object
// open: what landed before the failure stays, each recorded, for the
// delivery's outcome to take back or keep (TestRetryTaskContinues).
func TestPipelineLeavesNoObjectOpenOnFailure(t *testing.T) {
	recs := sampledata.All(sampledata.NewCustomer360(nil, 500, 100, 3))
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	good := ipcStream(t, sampledata.Customer360Schema, recs)
	for name, cfg := range outputs(t) {
		t.Run(name, func(t *testing.T) {
			sink := newMemSink()
			o := &output{cfg: cfg, sink: sink, prog: &progress{}, success: true, outputName: "out"}
			objs, err := o.run(context.Background(), bytes.NewReader(good))
			if err != nil {
				t.Fatal(err)
			}
			var rows int64
			for _, obj := range objs {
				rows += obj.GetRows()
			}
			if rows != 500 || o.prog.rows.Load() != 500 || objs[len(objs)-1].GetKind() != "success" {
				t.Fatalf("delivered %d rows (progress %d) in %d objects", rows, o.prog.rows.Load(), len(objs))
			}
			// Cut in the last batch: the files already written stay, whole.
			sink = newMemSink()
			o = &output{cfg: cfg, sink: sink, prog: &progress{}, outputName: "out"}
			_, err = o.run(context.Background(), bytes.NewReader(good[:len(good)-100]))
			var ie *arrowingest.Error
			if !errors.As(err, &ie) {
				t.Fatalf("truncated stream: got %v, want an arrowingest.Error", err)
			}
			if sink.open != 0 {
				t.Fatalf("after the failure: %d objects open", sink.open)
			}
			for key, b := range sink.objects {
				if len(b) == 0 {
					t.Errorf("%s landed empty", key)
				}
			}
		})
	}
}

// FuzzPipeline feeds mutated Arrow streams through the delivery pipeline
// as Deliver runs it (hardened ingest, then CSV+gzip split by rows on two
// goroutines, NDJSON split by bytes, Parquet); the process must survive
// every input, and a refused input must leave no object open.
func FuzzPipeline(f *testing.F) {
	recs := sampledata.All(sampledata.NewCustomer360(nil, 60, 25, 5))
	f.Add(ipcStream(f, sampledata.Customer360Schema, recs))
	f.Add(ipcStream(f, sampledata.Customer360Schema, recs[:1], ipc.WithZstd()))
	nested := arrow.NewSchema([]arrow.Field{
		{Name: "s", Type: arrow.StructOf(arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int32, Nullable: true}), Nullable: true},
		{Name: "l", Type: arrow.LargeListOf(arrow.BinaryTypes.LargeString), Nullable: true},
		{Name: "d", Type: &arrow.Decimal128Type{Precision: 20, Scale: 4}},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, nested)
	for i := range 4 {
		b.Field(0).(*array.StructBuilder).Append(true)
		b.Field(0).(*array.StructBuilder).FieldBuilder(0).(*array.Int32Builder).Append(int32(i))
		b.Field(1).(*array.LargeListBuilder).Append(true)
		b.Field(1).(*array.LargeListBuilder).ValueBuilder().(*array.LargeStringBuilder).Append("v")
		b.Field(2).(*array.Decimal128Builder).Append(decimal128FromInt(int64(i)))
	}
	nrec := b.NewRecordBatch()
	f.Add(ipcStream(f, nested, []arrow.RecordBatch{nrec}))
	cfgs := outputs(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		for name, cfg := range cfgs {
			sink := newMemSink()
			o := &output{cfg: cfg, sink: sink, prog: &progress{}, success: true, manifest: true, outputName: "out",
				limits: arrowingest.Limits{MaxBatchBytes: 1 << 20, MaxMetadataBytes: 1 << 16}}
			_, err := o.run(context.Background(), bytes.NewReader(in))
			if err != nil && sink.open != 0 {
				t.Fatalf("%s: refused (%v) but left %d objects open", name, err, sink.open)
			}
		}
	})
}

func decimal128FromInt(v int64) decimal128.Num { return decimal128.FromI64(v) }

// BenchmarkPipeline runs the pipeline on an in-memory stream of the
// customer table into a memory sink (no network, no S3), beside the
// encode alone, to show what ingest (framing, checks, full validation)
// adds.
func BenchmarkPipeline(b *testing.B) {
	recs := sampledata.All(sampledata.NewCustomer360(nil, 200_000, 0, 9))
	stream := ipcStream(b, sampledata.Customer360Schema, recs)
	cfg := outputs(b)["ndjson"]
	cfg.MaxBytes = 0
	b.Run("ingest+ndjson", func(b *testing.B) {
		for b.Loop() {
			o := &output{cfg: cfg, sink: newMemSink(), prog: &progress{}, outputName: "out"}
			if _, err := o.run(context.Background(), bytes.NewReader(stream)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(200_000*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("ingest-only", func(b *testing.B) {
		for b.Loop() {
			r, err := arrowingest.NewReader(bytes.NewReader(stream), arrowingest.Limits{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			for {
				rec, err := r.Next()
				if err != nil {
					break
				}
				rec.Release()
			}
			r.Release()
		}
		b.ReportMetric(float64(200_000*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("ndjson-only", func(b *testing.B) {
		for b.Loop() {
			fw, err := fileset.New(sampledata.Customer360Schema, cfg, newMemSink())
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range recs {
				if err := fw.Write(r); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := fw.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(200_000*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}
