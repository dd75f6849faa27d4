package arrowfmt_test

import (
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/compression"
	"github.com/sluicehq/sluice/pkg/sampledata"
)

// customer360 is the benchmark's fixed dataset: sampledata's customer 360
// table in batches of 64Ki rows, SLUICE_BENCH_ROWS rows in all (1,000,000
// by default).
var customer360 = sync.OnceValues(func() (*arrow.Schema, []arrow.RecordBatch) {
	rows := int64(1_000_000)
	if s := os.Getenv("SLUICE_BENCH_ROWS"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			rows = n
		}
	}
	return sampledata.Customer360Schema, sampledata.All(sampledata.NewCustomer360(nil, rows, 0, 360))
})

// counter counts output bytes and drops them.
type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

type batchWriter interface {
	Write(arrow.RecordBatch) error
	Close() error
}

// BenchmarkFormats writes the customer 360 dataset in every format and
// compression and reports MB/s of output, rows/s and allocations per row,
// beside the raw pqarrow write of the same batches. Run it at GOMAXPROCS=2
// and 1: `make bench` and `GOMAXPROCS=1 make bench`.
func BenchmarkFormats(b *testing.B) {
	schema, recs := customer360()
	var rows int64
	for _, r := range recs {
		rows += r.NumRows()
	}
	type target struct {
		name  string
		kind  compression.Kind
		build func(io.Writer) (batchWriter, error)
	}
	delimited := func(d rune) func(io.Writer) (batchWriter, error) {
		return func(w io.Writer) (batchWriter, error) {
			return arrowfmt.NewDelimited(w, schema, arrowfmt.DelimitedOptions{Delimiter: d, Header: true})
		}
	}
	jsonw := func(lines bool) func(io.Writer) (batchWriter, error) {
		return func(w io.Writer) (batchWriter, error) {
			return arrowfmt.NewJSON(w, schema, arrowfmt.JSONOptions{Lines: lines})
		}
	}
	parquetw := func(c arrowfmt.Codec, serial bool) func(io.Writer) (batchWriter, error) {
		return func(w io.Writer) (batchWriter, error) {
			return arrowfmt.NewParquet(w, schema, arrowfmt.ParquetOptions{Codec: c, Serial: serial})
		}
	}
	raw := func(w io.Writer) (batchWriter, error) {
		props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithMaxRowGroupLength(arrowfmt.DefaultRowGroupRows))
		fw, err := pqarrow.NewFileWriter(schema, w, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
		return rawParquet{fw}, err
	}
	targets := []target{
		{"pqarrow-raw-snappy", compression.None, raw},
		{"parquet-snappy", compression.None, parquetw(arrowfmt.Snappy, false)},
		{"parquet-zstd", compression.None, parquetw(arrowfmt.Zstd, false)},
		// The same encodings through pqarrow's serial writer: what column
		// parallelism adds.
		{"parquet-zstd-serial", compression.None, parquetw(arrowfmt.Zstd, true)},
		{"csv", compression.None, delimited(',')},
		{"csv-gzip", compression.Gzip, delimited(',')},
		{"tsv-zip", compression.Zip, delimited('\t')},
		{"json", compression.None, jsonw(false)},
		{"ndjson", compression.None, jsonw(true)},
		{"ndjson-gzip", compression.Gzip, jsonw(true)},
	}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			var out counter
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			for b.Loop() {
				out.n = 0
				cw, err := compression.New(&out, tg.kind, compression.Options{Name: "customer_360"})
				if err != nil {
					b.Fatal(err)
				}
				w, err := tg.build(cw)
				if err != nil {
					b.Fatal(err)
				}
				for _, rec := range recs {
					if err := w.Write(rec); err != nil {
						b.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				if err := cw.Close(); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start).Seconds()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(out.n)/1e6*float64(b.N)/elapsed, "MB/s")
			b.ReportMetric(float64(rows)*float64(b.N)/elapsed, "rows/s")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(rows)/float64(b.N), "allocs/row")
			b.ReportMetric(float64(out.n)/1e6, "MB")
		})
	}
}

type rawParquet struct{ fw *pqarrow.FileWriter }

func (r rawParquet) Write(rec arrow.RecordBatch) error { return r.fw.WriteBuffered(rec) }
func (r rawParquet) Close() error                      { return r.fw.Close() }
