package arrowfmt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
)

// writeParquet writes recs with o and answers the file.
func writeParquet(t *testing.T, schema *arrow.Schema, recs []arrow.RecordBatch, o arrowfmt.ParquetOptions) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := arrowfmt.NewParquet(&out, schema, o)
	if err != nil {
		t.Fatal(err)
	}
	if arrowfmt.ColumnParallel(w) == o.Serial {
		t.Fatalf("writer column-parallel %v with Serial %v", arrowfmt.ColumnParallel(w), o.Serial)
	}
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// readParquet reads a whole file back, with the file's key-value metadata.
func readParquet(t *testing.T, b []byte) (arrow.Table, map[string]string) {
	t.Helper()
	rdr, err := file.NewParquetReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	kv := map[string]string{}
	for _, e := range rdr.MetaData().KeyValueMetadata() {
		if e.Value != nil {
			kv[e.Key] = *e.Value
		}
	}
	tbl, err := pqarrow.ReadTable(context.Background(), bytes.NewReader(b), nil, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	return tbl, kv
}

// tableRows renders each row of a column, for comparing two tables value
// by value whatever their chunking.
func tableRows(tbl arrow.Table, k int) []string {
	var rows []string
	for _, chunk := range tbl.Column(k).Data().Chunks() {
		for i := 0; i < chunk.Len(); i++ {
			if chunk.IsNull(i) {
				rows = append(rows, "<null>")
			} else {
				rows = append(rows, fmt.Sprintf("%v", chunk.GetOneForMarshal(i)))
			}
		}
	}
	return rows
}

// The column-parallel writer computes definition and repetition levels
// itself; pqarrow's serial FileWriter is the reference. For every column
// type Parquet carries, alone and all together, under each dictionary
// choice and page version, both files read back identical: the same
// schema, the same stored Arrow schema and metadata, the same values.
func TestParquetParallelMatchesSerial(t *testing.T) {
	cols := append(parquetColumns(t), deepColumns()...)
	type variant struct {
		name string
		opts arrowfmt.ParquetOptions
	}
	variants := []variant{
		{"auto", arrowfmt.ParquetOptions{RowGroupRows: 250}},
		{"always-v2", arrowfmt.ParquetOptions{RowGroupRows: 300, Dictionary: arrowfmt.DictionaryAlways, DataPage: arrowfmt.DataPageV2, Codec: arrowfmt.Zstd}},
		{"never", arrowfmt.ParquetOptions{RowGroupRows: 1000, Dictionary: arrowfmt.DictionaryNever, Codec: arrowfmt.Uncompressed}},
	}
	sets := [][]column{cols}
	for _, c := range cols {
		sets = append(sets, []column{c})
	}
	for _, set := range sets {
		name := "all"
		if len(set) == 1 {
			name = set[0].field.Name
		}
		t.Run(name, func(t *testing.T) {
			schema, recs := batches(t, set, 7)
			for _, v := range variants {
				serialOpts := v.opts
				serialOpts.Serial = true
				parallel, serial := writeParquet(t, schema, recs, v.opts), writeParquet(t, schema, recs, serialOpts)
				pt, pkv := readParquet(t, parallel)
				defer pt.Release()
				st, skv := readParquet(t, serial)
				defer st.Release()
				if !pt.Schema().Equal(st.Schema()) {
					t.Fatalf("%s: parallel schema %s, serial %s", v.name, pt.Schema(), st.Schema())
				}
				if fmt.Sprint(pkv) != fmt.Sprint(skv) {
					t.Fatalf("%s: parallel metadata %v, serial %v", v.name, pkv, skv)
				}
				if pt.NumRows() != st.NumRows() || pt.NumRows() == 0 {
					t.Fatalf("%s: parallel %d rows, serial %d", v.name, pt.NumRows(), st.NumRows())
				}
				for k := 0; k < int(st.NumCols()); k++ {
					p, s := tableRows(pt, k), tableRows(st, k)
					for i := range s {
						if p[i] != s[i] {
							t.Fatalf("%s: column %s row %d: parallel %s, serial %s", v.name, st.Schema().Field(k).Name, i, p[i], s[i])
						}
					}
				}
			}
		})
	}
}

// deepColumns nest lists, structs and maps inside one another, with nulls
// and empty lists at every level and required fields among optional ones.
func deepColumns() []column {
	scoresType := arrow.ListOfField(arrow.Field{Name: "item", Type: arrow.PrimitiveTypes.Int32, Nullable: true})
	entry := arrow.StructOf(
		arrow.Field{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "scores", Type: scoresType, Nullable: true},
		arrow.Field{Name: "rank", Type: arrow.PrimitiveTypes.Int64},
	)
	appendScores := func(b *array.ListBuilder, r *rand.Rand) {
		switch r.IntN(4) {
		case 0:
			b.AppendNull()
		case 1:
			b.AppendEmptyValue()
		default:
			b.Append(true)
			vb := b.ValueBuilder().(*array.Int32Builder)
			for range 1 + r.IntN(3) {
				if r.IntN(4) == 0 {
					vb.AppendNull()
				} else {
					vb.Append(r.Int32N(100))
				}
			}
		}
	}
	return []column{
		{arrow.Field{Name: "entries", Type: arrow.ListOfField(arrow.Field{Name: "item", Type: entry, Nullable: true}), Nullable: true}, func(b array.Builder, r *rand.Rand) {
			lb := b.(*array.ListBuilder)
			switch r.IntN(5) {
			case 0:
				lb.AppendNull()
				return
			case 1:
				lb.AppendEmptyValue()
				return
			}
			lb.Append(true)
			sb := lb.ValueBuilder().(*array.StructBuilder)
			for range 1 + r.IntN(3) {
				if r.IntN(5) == 0 {
					sb.AppendNull()
					continue
				}
				sb.Append(true)
				if r.IntN(3) == 0 {
					sb.FieldBuilder(0).AppendNull()
				} else {
					sb.FieldBuilder(0).(*array.StringBuilder).Append(tricky[r.IntN(len(tricky))])
				}
				appendScores(sb.FieldBuilder(1).(*array.ListBuilder), r)
				sb.FieldBuilder(2).(*array.Int64Builder).Append(r.Int64())
			}
		}},
		{arrow.Field{Name: "profile", Type: arrow.StructOf(
			arrow.Field{Name: "tags", Type: arrow.ListOfNonNullable(arrow.BinaryTypes.String)},
			arrow.Field{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		)}, func(b array.Builder, r *rand.Rand) {
			sb := b.(*array.StructBuilder)
			sb.Append(true)
			tb := sb.FieldBuilder(0).(*array.ListBuilder)
			tb.Append(true)
			for range r.IntN(3) {
				tb.ValueBuilder().(*array.StringBuilder).Append(tricky[r.IntN(len(tricky))])
			}
			if r.IntN(3) == 0 {
				sb.FieldBuilder(1).AppendNull()
			} else {
				sb.FieldBuilder(1).(*array.Float64Builder).Append(r.NormFloat64())
			}
		}},
		{arrow.Field{Name: "grid", Type: arrow.ListOf(arrow.ListOf(arrow.BinaryTypes.String)), Nullable: true}, func(b array.Builder, r *rand.Rand) {
			lb := b.(*array.ListBuilder)
			if r.IntN(6) == 0 {
				lb.AppendNull()
				return
			}
			lb.Append(true)
			inner := lb.ValueBuilder().(*array.ListBuilder)
			for range r.IntN(3) {
				if r.IntN(4) == 0 {
					inner.AppendNull()
					continue
				}
				inner.Append(true)
				for range r.IntN(3) {
					if r.IntN(5) == 0 {
						inner.ValueBuilder().AppendNull()
					} else {
						inner.ValueBuilder().(*array.StringBuilder).Append(tricky[r.IntN(len(tricky))])
					}
				}
			}
		}},
		{arrow.Field{Name: "by_key", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.StructOf(
			arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int64, Nullable: true})), Nullable: true}, func(b array.Builder, r *rand.Rand) {
			mb := b.(*array.MapBuilder)
			if r.IntN(6) == 0 {
				mb.AppendNull()
				return
			}
			mb.Append(true)
			for k := range r.IntN(3) {
				mb.KeyBuilder().(*array.StringBuilder).Append([]string{"x", "y", "z"}[k])
				ib := mb.ItemBuilder().(*array.StructBuilder)
				if r.IntN(4) == 0 {
					ib.AppendNull()
					continue
				}
				ib.Append(true)
				ib.FieldBuilder(0).(*array.Int64Builder).Append(r.Int64N(9))
			}
		}},
	}
}

// A decimal Parquet cannot type (scale past precision, or negative) is
// refused before any byte, naming the column; pqarrow panics on it when
// decimals are stored as integers, found by FuzzPipeline.
func TestParquetRefusesDecimalsParquetCannotType(t *testing.T) {
	for _, dt := range []arrow.DataType{&arrow.Decimal128Type{Precision: 5, Scale: 7}, &arrow.Decimal128Type{Precision: 5, Scale: -2},
		&arrow.Decimal256Type{Precision: 40, Scale: 41}} {
		schema := arrow.NewSchema([]arrow.Field{{Name: "ok", Type: arrow.PrimitiveTypes.Int64}, {Name: "amount", Type: dt, Nullable: true}}, nil)
		_, err := arrowfmt.NewParquet(&bytes.Buffer{}, schema, arrowfmt.ParquetOptions{})
		var unsupported *arrowfmt.UnsupportedError
		if !errors.As(err, &unsupported) || unsupported.Column != "amount" {
			t.Errorf("%s: %v, want the column refused", dt, err)
		}
	}
}

// Column properties are keyed by dotted path: columns that share one (two
// columns of one name, or a top-level "a.b" beside struct a's field b) keep
// the defaults rather than taking an encoding meant for another type
// (found by FuzzPipeline: delta integers on a string column panicked).
func TestParquetColumnsSharingAPath(t *testing.T) {
	cols := []column{
		{arrow.Field{Name: "country", Type: arrow.BinaryTypes.String, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			b.(*array.StringBuilder).Append(fmt.Sprint("c", r.IntN(1000)))
		}},
		{arrow.Field{Name: "country", Type: arrow.PrimitiveTypes.Int64}, func(b array.Builder, r *rand.Rand) {
			b.(*array.Int64Builder).Append(r.Int64())
		}},
		{arrow.Field{Name: "a.b", Type: arrow.PrimitiveTypes.Int32}, func(b array.Builder, r *rand.Rand) {
			b.(*array.Int32Builder).Append(r.Int32())
		}},
		{arrow.Field{Name: "a", Type: arrow.StructOf(arrow.Field{Name: "b", Type: arrow.BinaryTypes.String})}, func(b array.Builder, r *rand.Rand) {
			sb := b.(*array.StructBuilder)
			sb.Append(true)
			sb.FieldBuilder(0).(*array.StringBuilder).Append(fmt.Sprint("v", r.IntN(100000)))
		}},
	}
	schema, recs := batches(t, cols, 3)
	for _, serial := range []bool{false, true} {
		tbl, _ := readParquet(t, writeParquet(t, schema, recs, arrowfmt.ParquetOptions{Serial: serial}))
		for k := range cols {
			var want []string
			for _, rec := range recs {
				for i := 0; i < int(rec.NumRows()); i++ {
					want = append(want, fmt.Sprintf("%v", rec.Column(k).GetOneForMarshal(i)))
				}
			}
			if got := tableRows(tbl, k); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("serial %v: column %d read back differently", serial, k)
			}
		}
		tbl.Release()
	}
}
