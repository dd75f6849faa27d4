package arrowingest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// layout must count exactly what arrow-go reads, or a valid stream would
// be refused: a stream of every Arrow type, written by arrow-go, with and
// without compression, reads back whole.
func TestEveryTypeReadsBack(t *testing.T) {
	long := strings.Repeat("past the twelve inline bytes ", 3)
	cols := []struct {
		dt   arrow.DataType
		json string
	}{
		{arrow.Null, `[null, null, null]`},
		{arrow.FixedWidthTypes.Boolean, `[true, null, false]`},
		{arrow.PrimitiveTypes.Int8, `[1, null, -3]`},
		{arrow.PrimitiveTypes.Uint64, `[1, null, 18446744073709551615]`},
		{arrow.FixedWidthTypes.Float16, `[1.5, null, -2]`},
		{arrow.PrimitiveTypes.Float64, `[1.5, null, -2]`},
		{&arrow.Decimal32Type{Precision: 9, Scale: 2}, `["1.25", null, "-3.50"]`},
		{&arrow.Decimal64Type{Precision: 18, Scale: 2}, `["1.25", null, "-3.50"]`},
		{&arrow.Decimal128Type{Precision: 38, Scale: 2}, `["1.25", null, "-3.50"]`},
		{&arrow.Decimal256Type{Precision: 76, Scale: 2}, `["1.25", null, "-3.50"]`},
		{arrow.BinaryTypes.String, `["a", null, "c"]`},
		{arrow.BinaryTypes.LargeString, `["a", null, "c"]`},
		{arrow.BinaryTypes.Binary, `["YQ==", null, "Yw=="]`},
		{arrow.BinaryTypes.LargeBinary, `["YQ==", null, "Yw=="]`},
		{arrow.BinaryTypes.StringView, `["short", null, "` + long + `"]`},
		{arrow.BinaryTypes.BinaryView, `["YQ==", null, "Yw=="]`},
		{&arrow.FixedSizeBinaryType{ByteWidth: 1}, `["YQ==", null, "Yw=="]`},
		{arrow.FixedWidthTypes.Date32, `[1, null, 3]`},
		{arrow.FixedWidthTypes.Date64, `[86400000, null, 0]`},
		{arrow.FixedWidthTypes.Time32ms, `[1, null, 3]`},
		{arrow.FixedWidthTypes.Time64ns, `[1, null, 3]`},
		{arrow.FixedWidthTypes.Timestamp_us, `[1, null, 3]`},
		{arrow.FixedWidthTypes.Duration_s, `[1, null, 3]`},
		{arrow.FixedWidthTypes.MonthInterval, `[{"months": 1}, null, {"months": 3}]`},
		{arrow.FixedWidthTypes.DayTimeInterval, `[{"days": 1, "milliseconds": 2}, null, {"days": 3, "milliseconds": 4}]`},
		{arrow.FixedWidthTypes.MonthDayNanoInterval, `[{"months": 1, "days": 2, "nanoseconds": 3}, null, {"months": 1, "days": 2, "nanoseconds": 3}]`},
		{arrow.ListOf(arrow.PrimitiveTypes.Int32), `[[1, 2], null, []]`},
		{arrow.LargeListOf(arrow.BinaryTypes.String), `[["a"], null, []]`},
		{arrow.ListViewOf(arrow.PrimitiveTypes.Int32), `[[1, 2], null, []]`},
		{arrow.LargeListViewOf(arrow.PrimitiveTypes.Int32), `[[1, 2], null, []]`},
		{arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Int32), `[[1, 2], null, [3, 4]]`},
		{arrow.StructOf(arrow.Field{Name: "a", Type: arrow.BinaryTypes.StringView, Nullable: true}), `[{"a": "x"}, null, {"a": "` + long + `"}]`},
		{arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int64), `[[{"key": "a", "value": 1}], null, []]`},
		{&arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}, `["a", null, "a"]`},
		{&arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.PrimitiveTypes.Int64}, `[7, null, 7]`},
	}
	var fields []arrow.Field
	var arrs []arrow.Array
	for k, c := range cols {
		arr, _, err := array.FromJSON(memory.DefaultAllocator, c.dt, strings.NewReader(c.json))
		if err != nil {
			t.Fatalf("%s: %v", c.dt, err)
		}
		defer arr.Release()
		fields = append(fields, arrow.Field{Name: string(rune('a'+k%26)) + c.dt.Name(), Type: c.dt, Nullable: true})
		arrs = append(arrs, arr)
	}
	// Unions and run-end encoding, which FromJSON does not build.
	typeIDs, _, _ := array.FromJSON(memory.DefaultAllocator, arrow.PrimitiveTypes.Int8, strings.NewReader(`[0, 1, 0]`))
	defer typeIDs.Release()
	ints, _, _ := array.FromJSON(memory.DefaultAllocator, arrow.PrimitiveTypes.Int32, strings.NewReader(`[1, 2, 3]`))
	defer ints.Release()
	strs, _, _ := array.FromJSON(memory.DefaultAllocator, arrow.BinaryTypes.String, strings.NewReader(`["a", "b", "c"]`))
	defer strs.Release()
	sparse, err := array.NewSparseUnionFromArraysWithFields(typeIDs, []arrow.Array{ints, strs}, []string{"i", "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer sparse.Release()
	offsets, _, _ := array.FromJSON(memory.DefaultAllocator, arrow.PrimitiveTypes.Int32, strings.NewReader(`[0, 0, 1]`))
	defer offsets.Release()
	dense, err := array.NewDenseUnionFromArraysWithFields(typeIDs, offsets, []arrow.Array{ints, strs}, []string{"i", "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer dense.Release()
	runEnds, _, _ := array.FromJSON(memory.DefaultAllocator, arrow.PrimitiveTypes.Int32, strings.NewReader(`[2, 3]`))
	defer runEnds.Release()
	values, _, _ := array.FromJSON(memory.DefaultAllocator, arrow.BinaryTypes.String, strings.NewReader(`["x", null]`))
	defer values.Release()
	ree := array.NewRunEndEncodedArray(runEnds, values, 3, 0)
	defer ree.Release()
	for _, a := range []arrow.Array{sparse, dense, ree} {
		fields = append(fields, arrow.Field{Name: a.DataType().Name(), Type: a.DataType(), Nullable: true})
		arrs = append(arrs, a)
	}
	schema := arrow.NewSchema(fields, nil)
	rec := array.NewRecordBatch(schema, arrs, 3)
	defer rec.Release()
	for _, opts := range [][]ipc.Option{nil, {ipc.WithZstd()}, {ipc.WithLZ4()}} {
		in := stream(t, schema, []arrow.RecordBatch{rec, rec}, opts...)
		got, err := readAll(t, bytes.NewReader(in), Limits{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatalf("%d options: %v", len(opts), err)
		}
		if len(got) != 2 || !array.RecordEqual(got[0], rec) || !array.RecordEqual(got[1], rec) {
			t.Fatalf("%d options: read %d batches, not the ones written", len(opts), len(got))
		}
		for _, g := range got {
			g.Release()
		}
	}
}
