package arrowfmt_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/compression"
)

// customer360 is the benchmark's fixed dataset: about 20 columns of mixed
// types, in batches of 64Ki rows, SLUICE_BENCH_ROWS rows in all (1,000,000
// by default).
var customer360 = sync.OnceValues(func() (*arrow.Schema, []arrow.RecordBatch) {
	rows := 1_000_000
	if s := os.Getenv("SLUICE_BENCH_ROWS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			rows = n
		}
	}
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "customer_id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "email", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "first_name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "last_name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "city", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "country", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}, Nullable: true},
		{Name: "age", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "lifetime_value", Type: &arrow.Decimal128Type{Precision: 18, Scale: 2}, Nullable: true},
		{Name: "orders", Type: arrow.PrimitiveTypes.Int32},
		{Name: "avg_basket", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "churn_score", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		{Name: "opted_in", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "signup_date", Type: arrow.FixedWidthTypes.Date32},
		{Name: "last_seen", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "last_order", Type: &arrow.TimestampType{Unit: arrow.Millisecond}, Nullable: true},
		{Name: "segment", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}},
		{Name: "phone", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "zip", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "interests", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
		{Name: "loyalty_points", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	}, nil)
	r := rand.New(rand.NewPCG(360, 360))
	first := []string{"Ann", "Bob", "Chen", "Dara", "Eve", "Farid", "Gus", "Hana"}
	last := []string{"Smith", "O'Neil", "Nguyen", "García", "Kowalski", "Okafor"}
	cities := []string{"Seattle", "New York, NY", "Paris", "São Paulo", "Lagos", "Tokyo"}
	countries := []string{"US", "FR", "BR", "NG", "JP"}
	segments := []string{"gold", "silver", "bronze", "at risk"}
	interests := []string{"running", "cooking", "travel", "games", "music"}
	var recs []arrow.RecordBatch
	for id := 0; id < rows; {
		n := min(64*1024, rows-id)
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		for range n {
			id++
			b.Field(0).(*array.Int64Builder).Append(int64(id))
			b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("customer%d@example.com", id))
			b.Field(2).(*array.StringBuilder).Append(first[r.IntN(len(first))])
			b.Field(3).(*array.StringBuilder).Append(last[r.IntN(len(last))])
			b.Field(4).(*array.StringBuilder).Append(cities[r.IntN(len(cities))])
			_ = b.Field(5).(*array.BinaryDictionaryBuilder).AppendString(countries[r.IntN(len(countries))])
			b.Field(6).(*array.Int32Builder).Append(int32(18 + r.IntN(70)))
			b.Field(7).(*array.Decimal128Builder).Append(decimalCents(r.Int64N(10_000_000)))
			b.Field(8).(*array.Int32Builder).Append(int32(r.IntN(200)))
			b.Field(9).(*array.Float64Builder).Append(r.Float64() * 300)
			b.Field(10).(*array.Float32Builder).Append(r.Float32())
			b.Field(11).(*array.BooleanBuilder).Append(r.IntN(2) == 0)
			b.Field(12).(*array.Date32Builder).Append(arrow.Date32(17000 + r.IntN(3000)))
			b.Field(13).(*array.TimestampBuilder).Append(arrow.Timestamp(1.7e15 + r.Int64N(1e14)))
			if r.IntN(10) == 0 {
				b.Field(14).AppendNull()
			} else {
				b.Field(14).(*array.TimestampBuilder).Append(arrow.Timestamp(1.7e12 + r.Int64N(1e11)))
			}
			_ = b.Field(15).(*array.BinaryDictionaryBuilder).AppendString(segments[r.IntN(len(segments))])
			b.Field(16).(*array.StringBuilder).Append(fmt.Sprintf("+1-555-%04d", r.IntN(10000)))
			b.Field(17).(*array.StringBuilder).Append(fmt.Sprintf("%05d", r.IntN(100000)))
			lb := b.Field(18).(*array.ListBuilder)
			lb.Append(true)
			for range r.IntN(3) {
				lb.ValueBuilder().(*array.StringBuilder).Append(interests[r.IntN(len(interests))])
			}
			b.Field(19).(*array.Int64Builder).Append(r.Int64N(100000))
		}
		recs = append(recs, b.NewRecordBatch())
		b.Release()
	}
	return schema, recs
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
	parquetw := func(c arrowfmt.Codec) func(io.Writer) (batchWriter, error) {
		return func(w io.Writer) (batchWriter, error) {
			return arrowfmt.NewParquet(w, schema, arrowfmt.ParquetOptions{Codec: c})
		}
	}
	raw := func(w io.Writer) (batchWriter, error) {
		props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithMaxRowGroupLength(arrowfmt.DefaultRowGroupRows))
		fw, err := pqarrow.NewFileWriter(schema, w, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
		return rawParquet{fw}, err
	}
	targets := []target{
		{"pqarrow-raw-snappy", compression.None, raw},
		{"parquet-snappy", compression.None, parquetw(arrowfmt.Snappy)},
		{"parquet-zstd", compression.None, parquetw(arrowfmt.Zstd)},
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

func decimalCents(v int64) decimal128.Num { return decimal128.FromI64(v) }
