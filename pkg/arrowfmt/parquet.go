package arrowfmt

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Codec is the compression inside a Parquet file.
type Codec int

// Parquet codecs; Snappy is the default.
const (
	Snappy Codec = iota
	Zstd
	Gzip
	Uncompressed
)

// DefaultRowGroupRows bounds a row group, and so the memory a Parquet
// writer buffers: a row group is encoded whole before it is written.
const DefaultRowGroupRows = 128 * 1024

// DefaultRowGroupBytes bounds the Arrow bytes a row group gathers.
const DefaultRowGroupBytes = 64 << 20

// DataPageVersion is the version of the data pages in a Parquet file.
type DataPageVersion int

// Data page versions; V1 is the default, the one every reader knows.
const (
	DataPageV1 DataPageVersion = iota
	DataPageV2
)

// Dictionary says which columns are dictionary encoded.
type Dictionary int

// Dictionary choices. DictionaryAuto, the default, encodes a column with a
// dictionary where the first row group shows few distinct values (and
// always for Arrow dictionary columns), and otherwise with the encoding
// that suits its type: delta for integers, dates and timestamps, delta
// strings for strings and binaries, plain for floats and booleans.
const (
	DictionaryAuto Dictionary = iota
	// DictionaryAlways tries a dictionary on every column, falling back
	// to plain within a column chunk once it passes 1 MiB.
	DictionaryAlways
	// DictionaryNever encodes no column with a dictionary.
	DictionaryNever
)

// ParquetOptions configure a Parquet writer.
type ParquetOptions struct {
	Codec Codec
	// RowGroupRows is the most rows in one row group; DefaultRowGroupRows
	// when zero.
	RowGroupRows int64
	// RowGroupBytes cuts a row group early once the batches it gathers
	// hold this many bytes (DefaultRowGroupBytes when zero): a row group
	// is held whole until it is encoded, and 128Ki wide rows would
	// otherwise hold gigabytes.
	RowGroupBytes int64
	DataPage      DataPageVersion
	Dictionary    Dictionary
	// Dictionaries, when set with DictionaryAuto, says for each top-level
	// column whether it is dictionary encoded, instead of sampling the
	// first row group (see ChooseDictionaries).
	Dictionaries []bool
	// Serial encodes with pqarrow's own FileWriter, one column after the
	// other on the caller's goroutine: the reference the column-parallel
	// writer is tested against, and the path for types it cannot shred.
	Serial bool
	// pageBytes, when set, bounds data pages and dictionaries (arrow-go's
	// 1 MiB otherwise): tests set it small so that small tables cut pages
	// and fall back from dictionaries at every boundary large ones do.
	pageBytes int64
}

// Parquet writes record batches as one Parquet file, keeping Arrow's
// logical types (and the Arrow schema, so Arrow readers get back exactly
// the types written). Top-level columns Parquet has no type for are converted
// on the way: string and binary views become plain strings and binaries (the
// same values), date64 becomes date32 (Parquet dates are days), fixed-size
// lists become lists (their size in "sluice.fixed_size_list"), and
// durations become 64-bit integers of their unit, named in the field
// metadata under "sluice.duration_unit". Intervals are refused. Timestamps
// in seconds are stored in milliseconds, Parquet's coarsest unit.
//
// Row groups are encoded column-parallel: each top-level column of a row
// group is encoded on its own goroutine (see parquet_levels.go), on a
// goroutine of its own while the caller gathers the next row group.
type Parquet struct {
	w      io.Writer
	schema *arrow.Schema // ParquetSchema's
	opts   ParquetOptions
	rgRows int64
	plans  []*shredPlan // nil on the serial path
	// leafStart is each column's first leaf; cost what encoding it took
	// in the last row group, to schedule the costliest first.
	leafStart []int
	cost      []time.Duration
	rows      int64

	pending      []arrow.RecordBatch // the row group being gathered
	pendingRows  int64
	pendingBytes int64 // of the batches it holds slices of, whole

	// Set by the first row group, which chooses the encodings.
	arrowProps pqarrow.ArrowWriterProperties
	serial     *pqarrow.FileWriter
	fw         *file.Writer

	work   chan []arrow.RecordBatch // row groups to the encoding goroutine
	done   chan struct{}
	mu     sync.Mutex
	err    error // the encoding goroutine's first failure
	closed bool
	// sent and encoded count the row groups handed to and finished by the
	// encoding goroutine; onIdle, when set, is called once they are equal.
	sent, encoded int
	onIdle        func()
}

// Field metadata keys that say what a converted column was.
const (
	DurationUnitKey = "sluice.duration_unit"
	FixedSizeKey    = "sluice.fixed_size_list"
)

// ParquetSchema answers the schema a Parquet file holds for schema.
func ParquetSchema(schema *arrow.Schema) *arrow.Schema {
	fields := schema.Fields()
	for k, f := range fields {
		switch t := f.Type.(type) {
		case *arrow.StringViewType:
			fields[k].Type = arrow.BinaryTypes.String
		case *arrow.BinaryViewType:
			fields[k].Type = arrow.BinaryTypes.Binary
		case *arrow.Date64Type:
			// Parquet dates are days; Arrow says date64 holds whole days.
			fields[k].Type = arrow.FixedWidthTypes.Date32
		case *arrow.FixedSizeListType:
			// pqarrow cannot write a null entry that still owns values,
			// which every null of a fixed-size list does: write a list.
			fields[k].Type = arrow.ListOfField(t.ElemField())
			keys, values := append(f.Metadata.Keys(), FixedSizeKey), append(f.Metadata.Values(), strconv.Itoa(int(t.Len())))
			fields[k].Metadata = arrow.NewMetadata(keys, values)
		case *arrow.DurationType:
			fields[k].Type = arrow.PrimitiveTypes.Int64
			keys, values := append(f.Metadata.Keys(), DurationUnitKey), append(f.Metadata.Values(), t.Unit.String())
			fields[k].Metadata = arrow.NewMetadata(keys, values)
		}
	}
	md := schema.Metadata()
	return arrow.NewSchema(fields, &md)
}

type valuer[V any] interface {
	arrow.Array
	Value(int) V
}

type valueBuilder[W any] interface {
	array.Builder
	Append(W)
}

func same[V any](v V) V { return v }

// rebuild copies src into b's type, converting each value with conv.
func rebuild[V, W any](src valuer[V], b valueBuilder[W], conv func(V) W) arrow.Array {
	defer b.Release()
	b.Reserve(src.Len())
	for i := 0; i < src.Len(); i++ {
		if src.IsNull(i) {
			b.AppendNull()
		} else {
			b.Append(conv(src.Value(i)))
		}
	}
	return b.NewArray()
}

// fixedToList rewrites a fixed-size list as a list whose null entries own
// no values.
func fixedToList(f *array.FixedSizeList, listType arrow.DataType) (arrow.Array, error) {
	n := f.Len()
	values := f.ListValues()
	bitmap := make([]byte, bitutil.BytesForBits(int64(n)))
	offsets := make([]int32, 1, n+1)
	var pieces []arrow.Array
	defer func() {
		for _, p := range pieces {
			p.Release()
		}
	}()
	for i := 0; i < n; i++ {
		last := offsets[len(offsets)-1]
		if f.IsNull(i) {
			offsets = append(offsets, last)
			continue
		}
		bitutil.SetBit(bitmap, i)
		start, end := f.ValueOffsets(i)
		pieces = append(pieces, array.NewSlice(values, start, end))
		offsets = append(offsets, last+int32(end-start))
	}
	var child arrow.Array
	if len(pieces) == 0 {
		child = array.MakeArrayOfNull(memory.DefaultAllocator, values.DataType(), 0)
	} else {
		var err error
		if child, err = array.Concatenate(pieces, memory.DefaultAllocator); err != nil {
			return nil, err
		}
	}
	defer child.Release()
	data := array.NewData(listType, n,
		[]*memory.Buffer{memory.NewBufferBytes(bitmap), memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(offsets))},
		[]arrow.ArrayData{child.Data()}, f.NullN(), 0)
	defer data.Release()
	return array.MakeFromData(data), nil
}

// toParquet converts a batch's columns to ParquetSchema's types.
func toParquet(rec arrow.RecordBatch, schema *arrow.Schema, firstRow int64) (arrow.RecordBatch, error) {
	cols := rec.Columns()
	for k, col := range cols {
		if err := checkParquetRange(col, schema.Field(k).Name, firstRow); err != nil {
			return nil, err
		}
	}
	out := make([]arrow.Array, len(cols))
	for k, col := range cols {
		switch col.DataType().ID() {
		case arrow.STRING_VIEW:
			out[k] = rebuild(col.(*array.StringView), array.NewStringBuilder(memory.DefaultAllocator), same[string])
		case arrow.BINARY_VIEW:
			out[k] = rebuild(col.(*array.BinaryView), array.NewBinaryBuilder(memory.DefaultAllocator, arrow.BinaryTypes.Binary), same[[]byte])
		case arrow.DATE64:
			out[k] = rebuild(col.(*array.Date64), array.NewDate32Builder(memory.DefaultAllocator), func(d arrow.Date64) arrow.Date32 {
				return arrow.Date32FromTime(d.ToTime())
			})
		case arrow.FIXED_SIZE_LIST:
			l, err := fixedToList(col.(*array.FixedSizeList), schema.Field(k).Type)
			if err != nil {
				return nil, fmt.Errorf("column %q: %w", schema.Field(k).Name, err)
			}
			out[k] = l
		case arrow.DURATION:
			// Same buffers, read as int64: no copy.
			d := col.Data()
			data := array.NewData(arrow.PrimitiveTypes.Int64, d.Len(), d.Buffers(), nil, d.NullN(), d.Offset())
			out[k] = array.MakeFromData(data)
			data.Release()
		default:
			col.Retain()
			out[k] = col
		}
	}
	converted := array.NewRecordBatch(schema, out, rec.NumRows())
	for _, a := range out {
		a.Release()
	}
	return converted, nil
}

// checkParquetRange answers a *ValueError for the first value of a
// top-level column that Parquet's type for it cannot hold, rather than
// failing inside pqarrow (INTERNAL, #22) or wrapping silently: timestamps
// in seconds are stored in milliseconds, and dates in milliseconds as
// int32 days. firstRow is the file's row before the batch.
func checkParquetRange(col arrow.Array, name string, firstRow int64) error {
	var bad func(i int) bool
	var why string
	switch a := col.(type) {
	case *array.Timestamp:
		if a.DataType().(*arrow.TimestampType).Unit != arrow.Second {
			return nil
		}
		values := a.TimestampValues()
		bad = func(i int) bool { v := int64(values[i]); return v > math.MaxInt64/1000 || v < math.MinInt64/1000 }
		why = "the timestamp in seconds is past what Parquet's timestamps in milliseconds hold (about 292 million years either side of 1970)"
	case *array.Date64:
		values := a.Date64Values()
		bad = func(i int) bool {
			days := int64(values[i]) / 86_400_000
			return days > math.MaxInt32 || days < math.MinInt32
		}
		why = "the date is past what Parquet's dates (32-bit days, about 5.8 million years either side of 1970) hold"
	default:
		return nil
	}
	for i := 0; i < col.Len(); i++ {
		if col.IsValid(i) && bad(i) {
			return &ValueError{Column: name, Row: firstRow + int64(i) + 1, Reason: why}
		}
	}
	return nil
}
