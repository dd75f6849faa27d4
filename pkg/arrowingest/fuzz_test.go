package arrowingest

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/sampledata"
)

// Seeds is a set of valid streams for fuzzing: the customer table (with
// dictionaries and a list), the same LZ4-compressed, a struct and a map.
func fuzzSeeds(t testing.TB) [][]byte {
	recs := sampledata.All(sampledata.NewCustomer360(nil, 40, 16, 1))
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	nested := arrow.NewSchema([]arrow.Field{
		{Name: "s", Type: arrow.StructOf(arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int32, Nullable: true}, arrow.Field{Name: "b", Type: arrow.BinaryTypes.String}), Nullable: true},
		{Name: "m", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Float64), Nullable: true},
		{Name: "t", Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "Europe/Paris"}},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, nested)
	defer b.Release()
	for i := range 5 {
		sb := b.Field(0).(*array.StructBuilder)
		sb.Append(i != 2)
		sb.FieldBuilder(0).(*array.Int32Builder).Append(int32(i))
		sb.FieldBuilder(1).(*array.StringBuilder).Append("x")
		mb := b.Field(1).(*array.MapBuilder)
		mb.Append(true)
		mb.KeyBuilder().(*array.StringBuilder).Append("k")
		mb.ItemBuilder().(*array.Float64Builder).Append(float64(i) / 3)
		b.Field(2).(*array.TimestampBuilder).Append(arrow.Timestamp(int64(i) * 1e9))
	}
	nrec := b.NewRecordBatch()
	defer nrec.Release()
	return [][]byte{
		stream(t, sampledata.Customer360Schema, recs),
		stream(t, sampledata.Customer360Schema, recs[:1], ipc.WithLZ4()),
		stream(t, nested, []arrow.RecordBatch{nrec}),
	}
}

// FuzzReader feeds mutated streams to the reader and hands what it accepts
// to consumers that read every value; nothing may panic, and every refusal
// is an *Error. The delivery service's own fuzz target runs the whole
// pipeline behind it.
func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		r, err := NewReader(bytes.NewReader(in), Limits{MaxBatchBytes: 1 << 20, MaxMetadataBytes: 1 << 16}, mem)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("refusal is not an *Error: %v", err)
			}
			return
		}
		defer r.Release()
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("refusal is not an *Error: %v", err)
				}
				break
			}
			touch(rec)
			rec.Release()
		}
	})
}

// touch reads every value of rec, as a writer would.
func touch(rec arrow.RecordBatch) {
	for _, col := range rec.Columns() {
		for i := range col.Len() {
			_ = col.ValueStr(i)
		}
	}
}
