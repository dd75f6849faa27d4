package arrowfmt_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
)

// randomTable describes a table drawn at random: its columns (type,
// cardinality, null fraction, order of values), how its rows are cut into
// batches and the writer's row-group size and settings. Hand-picked tables
// missed a crash on an ordinary one (#22); drawn ones cover the space the
// encoding choices depend on.
type randomTable struct {
	seed    uint64
	cols    []randomColumn
	rows    int
	batches []int // rows per batch, summing to rows
	opts    arrowfmt.ParquetOptions
	// pageBytes bounds pages and dictionaries; 0 is arrow-go's 1 MiB.
	pageBytes int64
}

// randomColumn makes row i's value from a value number: i mod card when
// cyclic (the shape of names[i%8]), a random one of card otherwise, and i
// itself when card is 0 (unique, sorted).
type randomColumn struct {
	kind     string
	card     int
	cyclic   bool
	nullFrac float64
	nullable bool
}

var randomKinds = []string{"int64", "int32", "float64", "utf8", "bool", "timestamp", "date32", "decimal", "dict", "list", "struct", "binary", "largeutf8"}

func (c randomColumn) name(k int) string {
	return fmt.Sprintf("c%d_%s", k, c.kind)
}

func (c randomColumn) String() string {
	order := "random"
	if c.cyclic {
		order = "cyclic"
	}
	card := fmt.Sprint(c.card)
	if c.card == 0 {
		card = "unique"
	}
	return fmt.Sprintf("%s(card %s %s, nulls %.2f, nullable %v)", c.kind, card, order, c.nullFrac, c.nullable)
}

func (c randomColumn) dataType() arrow.DataType {
	switch c.kind {
	case "int64":
		return arrow.PrimitiveTypes.Int64
	case "int32":
		return arrow.PrimitiveTypes.Int32
	case "float64":
		return arrow.PrimitiveTypes.Float64
	case "utf8":
		return arrow.BinaryTypes.String
	case "largeutf8":
		return arrow.BinaryTypes.LargeString
	case "binary":
		return arrow.BinaryTypes.Binary
	case "bool":
		return arrow.FixedWidthTypes.Boolean
	case "timestamp":
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	case "date32":
		return arrow.FixedWidthTypes.Date32
	case "decimal":
		return &arrow.Decimal128Type{Precision: 18, Scale: 2}
	case "dict":
		return &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}
	case "list":
		return arrow.ListOf(arrow.BinaryTypes.String)
	case "struct":
		return arrow.StructOf(arrow.Field{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true}, arrow.Field{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true})
	}
	panic(c.kind)
}

// drawTable draws a table of up to maxRows rows spanning several row
// groups.
func drawTable(seed uint64, maxRows int) randomTable {
	r := rand.New(rand.NewPCG(seed, 22))
	t := randomTable{seed: seed}
	for range 1 + r.IntN(9) {
		c := randomColumn{kind: randomKinds[r.IntN(len(randomKinds))], cyclic: r.IntN(2) == 0, nullable: r.IntN(5) != 0}
		c.card = []int{0, 1, 2, 8, 97, 1000, 50_000}[r.IntN(7)]
		if c.nullable {
			c.nullFrac = []float64{0, 0, 0.01, 0.3, 1}[r.IntN(5)]
		}
		t.cols = append(t.cols, c)
	}
	t.opts.RowGroupRows = int64([]int{1, 7, 100, 1000, 4096, 10_000}[r.IntN(6)])
	t.opts.RowGroupBytes = []int64{0, 0, 0, 4096, 100_000}[r.IntN(5)] // cut by bytes first, sometimes
	t.rows = min(maxRows, int(t.opts.RowGroupRows)*(2+r.IntN(4))+r.IntN(int(t.opts.RowGroupRows)))
	for left := t.rows; left > 0; {
		n := min(left, []int{1, 3, 100, 1000, 4096, 65_536}[r.IntN(6)])
		if r.IntN(8) == 0 {
			n = min(left, int(t.opts.RowGroupRows)) // batches that align with row groups
		}
		t.batches = append(t.batches, n)
		left -= n
	}
	t.opts.Codec = []arrowfmt.Codec{arrowfmt.Snappy, arrowfmt.Zstd, arrowfmt.Uncompressed}[r.IntN(3)]
	t.opts.Dictionary = []arrowfmt.Dictionary{arrowfmt.DictionaryAuto, arrowfmt.DictionaryAuto, arrowfmt.DictionaryAlways, arrowfmt.DictionaryNever}[r.IntN(4)]
	if r.IntN(3) == 0 {
		t.opts.DataPage = arrowfmt.DataPageV2
	}
	// Small pages and dictionaries, so that a small table cuts pages (and
	// falls back from dictionaries) at as many places as a large one.
	if t.pageBytes = []int64{0, 1000, 8192, 65_536}[r.IntN(4)]; t.pageBytes > 0 {
		t.opts = arrowfmt.WithPageBytes(t.opts, t.pageBytes)
	}
	return t
}

func (t randomTable) String() string {
	cols := make([]string, len(t.cols))
	for k, c := range t.cols {
		cols[k] = c.String()
	}
	return fmt.Sprintf("seed %d: %d rows in %d batches, row groups of %d, pages of %d bytes, %+v; columns %s", t.seed, t.rows, len(t.batches), t.opts.RowGroupRows, t.pageBytes, t.opts, strings.Join(cols, ", "))
}

func (t randomTable) schema() *arrow.Schema {
	fields := make([]arrow.Field, len(t.cols))
	for k, c := range t.cols {
		fields[k] = arrow.Field{Name: c.name(k), Type: c.dataType(), Nullable: c.nullable}
	}
	return arrow.NewSchema(fields, nil)
}

// records builds the table's batches; the caller releases them.
func (t randomTable) records() []arrow.RecordBatch {
	r := rand.New(rand.NewPCG(t.seed, 2222))
	schema := t.schema()
	var out []arrow.RecordBatch
	row := 0
	for _, n := range t.batches {
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		for i := row; i < row+n; i++ {
			for k, c := range t.cols {
				c.append(b.Field(k), i, r)
			}
		}
		out = append(out, b.NewRecordBatch())
		b.Release()
		row += n
	}
	return out
}

func (c randomColumn) value(i int, r *rand.Rand) int {
	switch {
	case c.card == 0:
		return i
	case c.cyclic:
		return i % c.card
	}
	return r.IntN(c.card)
}

func (c randomColumn) append(b array.Builder, i int, r *rand.Rand) {
	if c.nullFrac > 0 && r.Float64() < c.nullFrac {
		b.AppendNull()
		return
	}
	v := c.value(i, r)
	switch b := b.(type) {
	case *array.Int64Builder:
		b.Append(int64(v))
	case *array.Int32Builder:
		b.Append(int32(v))
	case *array.Float64Builder:
		b.Append(float64(v) / 7)
	case *array.StringBuilder:
		b.Append(fmt.Sprintf("user%d@example.com", v))
	case *array.LargeStringBuilder:
		b.Append(fmt.Sprintf("v%d", v))
	case *array.BinaryBuilder:
		b.Append([]byte(fmt.Sprintf("b%d", v)))
	case *array.BooleanBuilder:
		b.Append(v%3 == 0)
	case *array.TimestampBuilder:
		b.Append(arrow.Timestamp(1.7e15 + int64(v)*1_000_003))
	case *array.Date32Builder:
		b.Append(arrow.Date32(18000 + v%20000))
	case *array.Decimal128Builder:
		b.Append(decimal128.FromI64(int64(v) * 101))
	case *array.BinaryDictionaryBuilder:
		if err := b.AppendString(fmt.Sprintf("state%d", v%30000)); err != nil {
			panic(err)
		}
	case *array.ListBuilder:
		b.Append(true)
		for j := range v % 4 {
			b.ValueBuilder().(*array.StringBuilder).Append(fmt.Sprintf("tag%d", (v+j)%50))
		}
	case *array.StructBuilder:
		b.Append(true)
		b.FieldBuilder(0).(*array.Int64Builder).Append(int64(v))
		if v%5 == 0 {
			b.FieldBuilder(1).AppendNull()
		} else {
			b.FieldBuilder(1).(*array.StringBuilder).Append(fmt.Sprint("s", v%11))
		}
	default:
		panic(fmt.Sprintf("%T", b))
	}
}

// randomTables answers how many drawn tables a test runs: a few dozen in
// make test, more by hand with SLUICE_RANDOM_TABLES.
func randomTables(t *testing.T, def int) int {
	if s := os.Getenv("SLUICE_RANDOM_TABLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("SLUICE_RANDOM_TABLES=%q: %v", s, err)
		}
		return n
	}
	return def
}

// Drawn tables written by the column-parallel writer read back exactly as
// pqarrow's serial writer's files of the same batches do.
func TestParquetParallelMatchesSerialOnDrawnTables(t *testing.T) {
	for seed := range uint64(randomTables(t, 40)) {
		tb := drawTable(seed, 60_000)
		recs := tb.records()
		schema := tb.schema()
		serialOpts := tb.opts
		serialOpts.Serial = true
		parallel, err := tryWriteParquet(schema, recs, tb.opts)
		if err != nil {
			t.Fatalf("%s\nparallel: %v", tb, err)
		}
		serial, err := tryWriteParquet(schema, recs, serialOpts)
		if err != nil {
			t.Fatalf("%s\nserial: %v", tb, err)
		}
		release(recs)
		pt, _ := readParquet(t, parallel)
		st, _ := readParquet(t, serial)
		if pt.NumRows() != int64(tb.rows) || st.NumRows() != int64(tb.rows) {
			t.Fatalf("%s\nparallel %d rows, serial %d", tb, pt.NumRows(), st.NumRows())
		}
		for k := range int(st.NumCols()) {
			if !sameColumn(t, pt.Column(k).Data(), st.Column(k).Data()) {
				t.Fatalf("%s\ncolumn %s differs between the parallel and the serial file", tb, st.Schema().Field(k).Name)
			}
		}
		pt.Release()
		st.Release()
	}
}

func release(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}

// tryWriteParquet writes recs with o, answering the writer's error.
func tryWriteParquet(schema *arrow.Schema, recs []arrow.RecordBatch, o arrowfmt.ParquetOptions) ([]byte, error) {
	var out bytes.Buffer
	w, err := arrowfmt.NewParquet(&out, schema, o)
	if err != nil {
		return nil, err
	}
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			w.Abort()
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// ordinaryTable is the table #22 found crashing the writer: 8 nullable
// columns with no nulls (a sorted id, unique emails, first names and
// states from 8 values, a float, a small count, a flag, a timestamp), in
// batchRows batches. Its names are 4 characters, so that a first name
// takes 8 raw bytes and a default row group (128Ki rows) fills its
// dictionary column's 1 MiB data page exactly: the column's last page was
// then already cut when the writer cut it again.
func ordinaryTable(rows, batchRows int) (*arrow.Schema, []arrow.RecordBatch) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "email", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "first_name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "ltv", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "orders", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "active", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "updated", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "state", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	names := []string{"Anna", "Bobo", "Chen", "Dara", "Evie", "Fara", "Gust", "Hana"}
	states := []string{"CA", "NY", "TX", "WA", "FL", "IL", "OR", "MA"}
	var out []arrow.RecordBatch
	for off := 0; off < rows; off += batchRows {
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		for i := off; i < min(rows, off+batchRows); i++ {
			b.Field(0).(*array.Int64Builder).Append(int64(i))
			b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("user%d@example.com", i))
			b.Field(2).(*array.StringBuilder).Append(names[i%8])
			b.Field(3).(*array.Float64Builder).Append(float64(i%100_000) / 7)
			b.Field(4).(*array.Int32Builder).Append(int32(i % 97))
			b.Field(5).(*array.BooleanBuilder).Append(i%3 == 0)
			b.Field(6).(*array.TimestampBuilder).Append(arrow.Timestamp(1.7e15 + int64(i)*1_000_000))
			b.Field(7).(*array.StringBuilder).Append(states[i%8])
		}
		out = append(out, b.NewRecordBatch())
		b.Release()
	}
	return schema, out
}

// The ordinary table of #22, over several default row groups and under
// every dictionary choice and page version, writes and reads back as
// pqarrow's serial writer's file does.
func TestParquetOrdinaryTableMatchesSerial(t *testing.T) {
	const rows = 300_000 // two full row groups and part of a third
	schema, recs := ordinaryTable(rows, 65_536)
	defer release(recs)
	for _, o := range []arrowfmt.ParquetOptions{{}, {Dictionary: arrowfmt.DictionaryAlways}, {DataPage: arrowfmt.DataPageV2, Codec: arrowfmt.Zstd}} {
		parallel, err := tryWriteParquet(schema, recs, o)
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		serialOpts := o
		serialOpts.Serial = true
		serial, err := tryWriteParquet(schema, recs, serialOpts)
		if err != nil {
			t.Fatalf("%+v serial: %v", o, err)
		}
		pt, _ := readParquet(t, parallel)
		st, _ := readParquet(t, serial)
		if pt.NumRows() != rows || st.NumRows() != rows {
			t.Fatalf("%+v: parallel %d rows, serial %d", o, pt.NumRows(), st.NumRows())
		}
		for k := range int(st.NumCols()) {
			if !sameColumn(t, pt.Column(k).Data(), st.Column(k).Data()) {
				t.Fatalf("%+v: column %s differs between the parallel and the serial file", o, st.Schema().Field(k).Name)
			}
		}
		pt.Release()
		st.Release()
	}
}

// sameColumn compares two chunked columns value by value, whatever their
// chunking.
func sameColumn(t *testing.T, a, b *arrow.Chunked) bool {
	t.Helper()
	ca, err := array.Concatenate(a.Chunks(), memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Release()
	cb, err := array.Concatenate(b.Chunks(), memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Release()
	return array.Equal(ca, cb)
}

// DuckDB, a reader that is not ours, reads the ordinary table of #22 and
// drawn tables written by the column-parallel writer as the same rows as
// pqarrow's serial writer's files of the same batches.
func TestParquetDrawnTablesReadBackInDuckDB(t *testing.T) {
	dir := t.TempDir()
	type pair struct {
		label            string
		rows             int
		parallel, serial string
	}
	var pairs []pair
	add := func(label string, schema *arrow.Schema, recs []arrow.RecordBatch, o arrowfmt.ParquetOptions, rows int) {
		n := len(pairs)
		p := pair{label: label, rows: rows, parallel: filepath.Join(dir, fmt.Sprintf("%d-parallel.parquet", n)), serial: filepath.Join(dir, fmt.Sprintf("%d-serial.parquet", n))}
		parallel, err := tryWriteParquet(schema, recs, o)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		o.Serial = true
		serial, err := tryWriteParquet(schema, recs, o)
		if err != nil {
			t.Fatalf("%s serial: %v", label, err)
		}
		if err := os.WriteFile(p.parallel, parallel, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.serial, serial, 0o644); err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, p)
	}
	schema, recs := ordinaryTable(300_000, 65_536)
	add("ordinary table", schema, recs, arrowfmt.ParquetOptions{}, 300_000)
	release(recs)
	for seed := range uint64(randomTables(t, 12)) {
		tb := drawTable(1000+seed, 30_000)
		recs := tb.records()
		add(tb.String(), tb.schema(), recs, tb.opts, tb.rows)
		release(recs)
	}
	var queries []string
	for _, p := range pairs {
		queries = append(queries, fmt.Sprintf(`SELECT (SELECT count(*) FROM read_parquet(%[1]s)) AS n,
			(SELECT count(*) FROM (SELECT * FROM read_parquet(%[1]s) EXCEPT ALL SELECT * FROM read_parquet(%[2]s))) AS only_parallel,
			(SELECT count(*) FROM (SELECT * FROM read_parquet(%[2]s) EXCEPT ALL SELECT * FROM read_parquet(%[1]s))) AS only_serial`,
			sqlString(p.parallel), sqlString(p.serial)))
	}
	for i, rows := range duckdb(t, queries...) {
		got := rows[0]
		want := map[string]string{"n": fmt.Sprint(pairs[i].rows), "only_parallel": "0", "only_serial": "0"}
		for k, v := range want {
			if fmt.Sprint(got[k]) != v {
				t.Errorf("%s: DuckDB answers %s = %v, want %v (%v)", pairs[i].label, k, got[k], v, got)
			}
		}
	}
}

// Temporal values at the ends of their ranges either read back as written
// or are refused by column and row before any byte of the batch (#22:
// timestamps in seconds past what milliseconds hold answered INTERNAL, and
// far dates in milliseconds wrapped silently into other days).
func TestParquetExtremeTemporalValues(t *testing.T) {
	type tc struct {
		dt      arrow.DataType
		values  []int64
		refused int64 // the 1-based row refused; 0 when all are written
	}
	for _, c := range []tc{
		{&arrow.TimestampType{Unit: arrow.Second, TimeZone: "UTC"}, []int64{0, math.MaxInt64 / 1000, math.MinInt64 / 1000}, 0},
		{&arrow.TimestampType{Unit: arrow.Second}, []int64{0, 1, math.MaxInt64/1000 + 1}, 3},
		{&arrow.TimestampType{Unit: arrow.Second}, []int64{math.MinInt64}, 1},
		{&arrow.TimestampType{Unit: arrow.Nanosecond}, []int64{math.MaxInt64, math.MinInt64, 0}, 0},
		{&arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "America/Los_Angeles"}, []int64{math.MaxInt64, math.MinInt64}, 0},
		{arrow.FixedWidthTypes.Date32, []int64{math.MaxInt32, math.MinInt32}, 0},
		{arrow.FixedWidthTypes.Date64, []int64{math.MaxInt32 * 86_400_000, math.MinInt32 * 86_400_000}, 0},
		{arrow.FixedWidthTypes.Date64, []int64{0, math.MaxInt64}, 2},
		{&arrow.DurationType{Unit: arrow.Nanosecond}, []int64{math.MaxInt64, math.MinInt64}, 0},
	} {
		schema := arrow.NewSchema([]arrow.Field{{Name: "when", Type: c.dt, Nullable: true}}, nil)
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		for _, v := range c.values {
			switch bb := b.Field(0).(type) {
			case *array.TimestampBuilder:
				bb.Append(arrow.Timestamp(v))
			case *array.Date32Builder:
				bb.Append(arrow.Date32(v))
			case *array.Date64Builder:
				bb.Append(arrow.Date64(v))
			case *array.DurationBuilder:
				bb.Append(arrow.Duration(v))
			}
		}
		b.Field(0).AppendNull()
		rec := b.NewRecordBatch()
		b.Release()
		for _, serial := range []bool{false, true} {
			out, err := tryWriteParquet(schema, []arrow.RecordBatch{rec}, arrowfmt.ParquetOptions{Serial: serial})
			if c.refused > 0 {
				var ve *arrowfmt.ValueError
				if !errors.As(err, &ve) || ve.Column != "when" || ve.Row != c.refused {
					t.Errorf("%s %v (serial %v): %v, want row %d refused by name", c.dt, c.values, serial, err, c.refused)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s %v (serial %v): %v", c.dt, c.values, serial, err)
				continue
			}
			tbl, _ := readParquet(t, out)
			col, err := array.Concatenate(tbl.Column(0).Data().Chunks(), memory.DefaultAllocator)
			tbl.Release()
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range c.values {
				var got int64
				switch a := col.(type) {
				case *array.Timestamp: // the same instant, in the unit read back
					read, written := int64(a.DataType().(*arrow.TimestampType).Unit.Multiplier()), int64(c.dt.(*arrow.TimestampType).Unit.Multiplier())
					if got = int64(a.Value(i)); read < written {
						got /= written / read
					}
				case *array.Date32:
					got = int64(a.Value(i))
					if c.dt.ID() == arrow.DATE64 { // read back as the same day
						v = int64(arrow.Date32FromTime(arrow.Date64(v).ToTime()))
					}
				case *array.Int64: // a duration, as int64 of its unit
					got = a.Value(i)
				case *array.Duration:
					got = int64(a.Value(i))
				default:
					t.Fatalf("%s read back as %s", c.dt, col.DataType())
				}
				if got != v {
					t.Errorf("%s (serial %v) row %d: read back %d, want %d", c.dt, serial, i+1, got, v)
				}
			}
			if !col.IsNull(len(c.values)) {
				t.Errorf("%s: the null read back as a value", c.dt)
			}
			col.Release()
		}
		rec.Release()
	}
}
