package arrowfmt_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
)

// chunkFacts is what a reader learns of a column chunk before its values.
type chunkFacts struct {
	Dictionary         bool
	Encodings          string
	Min, Max           string
	Nulls, Values      int64
	HasMinMax, HasNull bool
}

func facts(t *testing.T, b []byte) [][]chunkFacts {
	t.Helper()
	rdr, err := file.NewParquetReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	var out [][]chunkFacts
	for g := range rdr.NumRowGroups() {
		rg := rdr.MetaData().RowGroup(g)
		var cols []chunkFacts
		for c := range rg.NumColumns() {
			cc, err := rg.ColumnChunk(c)
			if err != nil {
				t.Fatal(err)
			}
			f := chunkFacts{Dictionary: cc.HasDictionaryPage(), Encodings: fmt.Sprint(cc.Encodings()), Values: cc.NumValues()}
			st, err := cc.Statistics()
			if err != nil {
				t.Fatal(err)
			}
			if st != nil {
				f.HasMinMax, f.HasNull = st.HasMinMax(), st.HasNullCount()
				if f.HasMinMax {
					f.Min, f.Max = fmt.Sprintf("%q", st.EncodeMin()), fmt.Sprintf("%q", st.EncodeMax())
				}
				f.Nulls = st.NullCount()
			}
			cols = append(cols, f)
		}
		out = append(out, cols)
	}
	return out
}

// The writer builds the dictionaries of low-cardinality string and binary
// columns itself (arrow-go's encoder cost an allocation and a comparison
// per value): a reader must find what arrow-go's own writer gives, the
// same dictionaries, encodings, statistics (bytes compared unsigned, nulls
// counted) and values, across batches that start mid-buffer, several row
// groups, and a column whose later row group has too many distinct values
// for a dictionary.
func TestParquetBuiltDictionariesMatchArrowGo(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "state", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "tier", Type: arrow.BinaryTypes.LargeString},
		{Name: "code", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "tag", Type: arrow.BinaryTypes.LargeBinary, Nullable: true},
		{Name: "later_unique", Type: arrow.BinaryTypes.String},
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "unique_text", Type: arrow.BinaryTypes.String},
	}, nil)
	states := []string{"", "CA", "NY", "Zürich", "ÿ", "TX"}
	codes := [][]byte{{0x00}, {0x7f}, {0x80, 0x01}, {0xff}, {}}
	const rows = 6000 // row groups of 2500: the third ends short
	bl := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer bl.Release()
	for i := range rows {
		if i%7 == 3 {
			bl.Field(0).AppendNull()
		} else {
			bl.Field(0).(*array.StringBuilder).Append(states[(i*i)%len(states)])
		}
		bl.Field(1).(*array.LargeStringBuilder).Append([]string{"gold", "silver", "bronze"}[i%3])
		if i%5 == 0 {
			bl.Field(2).AppendNull()
		} else {
			bl.Field(2).(*array.BinaryBuilder).Append(codes[i%len(codes)])
		}
		if i < 2500 { // all null in the first half of its first row group
			bl.Field(3).AppendNull()
		} else {
			bl.Field(3).(*array.BinaryBuilder).Append([]byte{byte(i % 4)})
		}
		if i < 2500 {
			bl.Field(4).(*array.StringBuilder).Append(states[i%2])
		} else {
			bl.Field(4).(*array.StringBuilder).Append(fmt.Sprintf("customer-%08d@example.com", i))
		}
		bl.Field(5).(*array.Int64Builder).Append(int64(i))
		bl.Field(6).(*array.StringBuilder).Append(fmt.Sprintf("row %d", i))
	}
	whole := bl.NewRecordBatch()
	defer whole.Release()
	// Batches of uneven sizes, each a slice of the one batch, so that their
	// arrays start at an offset into shared buffers.
	var recs []arrow.RecordBatch
	for at, n := int64(0), int64(1); at < rows; at, n = at+n, n*3 {
		end := min(rows, at+n)
		rec := whole.NewSlice(at, end)
		defer rec.Release()
		recs = append(recs, rec)
	}
	// Dictionaries up to 4 KiB: the unique emails of the second row group
	// pass it, the others never do. With DictionaryAlways the sorted ids
	// get one too, and the unique emails are given up early.
	// In one row group of DictionaryAlways under the default 1 MiB, the
	// unique texts are given up after a sample rather than at the limit.
	for _, c := range []struct {
		name   string
		opts   arrowfmt.ParquetOptions
		groups int
	}{
		{"auto", arrowfmt.WithPageBytes(arrowfmt.ParquetOptions{RowGroupRows: 2500}, 4096), 3},
		{"always", arrowfmt.WithPageBytes(arrowfmt.ParquetOptions{RowGroupRows: 2500, Dictionary: arrowfmt.DictionaryAlways}, 4096), 3},
		{"always-one-group", arrowfmt.ParquetOptions{RowGroupRows: rows, Dictionary: arrowfmt.DictionaryAlways}, 1},
	} {
		t.Run(c.name, func(t *testing.T) { builtMatchesArrowGo(t, schema, recs, c.opts, c.groups) })
	}
}

func builtMatchesArrowGo(t *testing.T, schema *arrow.Schema, recs []arrow.RecordBatch, opts arrowfmt.ParquetOptions, groups int) {
	const rows = 6000
	serialOpts := opts
	serialOpts.Serial = true
	built, reference := writeParquet(t, schema, recs, opts), writeParquet(t, schema, recs, serialOpts)

	got, want := facts(t, built), facts(t, reference)
	if len(got) != groups || len(want) != groups {
		t.Fatalf("%d and %d row groups, want %d", len(got), len(want), groups)
	}
	for g := range want {
		for c, w := range want[g] {
			if got[g][c] != w {
				t.Errorf("row group %d, column %s:\n built     %+v\n arrow-go  %+v", g, schema.Field(c).Name, got[g][c], w)
			}
		}
	}
	// The dictionaries under test were built: the low-cardinality columns
	// have one alone in every row group; the unique emails fall back to
	// plain after the first.
	for g := range got {
		for c := range 4 {
			if f := got[g][c]; !f.Dictionary || f.Encodings != "[RLE_DICTIONARY PLAIN RLE]" {
				t.Errorf("row group %d, column %s: %+v, want dictionary pages only", g, schema.Field(c).Name, f)
			}
		}
		if plain := got[g][4].Encodings != "[RLE_DICTIONARY PLAIN RLE]"; groups > 1 && plain != (g > 0) {
			t.Errorf("row group %d, later_unique: encodings %s", g, got[g][4].Encodings)
		}
	}

	gt, _ := readParquet(t, built)
	defer gt.Release()
	wt, _ := readParquet(t, reference)
	defer wt.Release()
	for k, f := range schema.Fields() {
		if g := gt.Schema().Field(k); g.Name != f.Name || !arrow.TypeEqual(g.Type, f.Type) || g.Nullable != f.Nullable {
			t.Fatalf("column %d read back as %s, want %s", k, g, f)
		}
	}
	for k := range schema.NumFields() {
		if g, w := tableRows(gt, k), tableRows(wt, k); !slices.Equal(g, w) || len(g) != rows {
			t.Fatalf("column %s: values differ from arrow-go's file (%d and %d rows)", schema.Field(k).Name, len(g), len(w))
		}
	}
}
