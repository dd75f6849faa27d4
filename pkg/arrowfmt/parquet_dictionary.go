package arrowfmt

import (
	"context"
	"fmt"
	"strings"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Why the writer builds string dictionaries itself: arrow-go's dictionary
// encoder hashes each value through an interface (an allocation per value)
// and updates min and max by comparing every value, so a low-cardinality
// string column was the costliest of the narrow customer table (60 ms of
// CPU for 1M first names of 8 distinct values, against 5 ms for the sorted
// id). Here a row group's distinct values are found with a Go map, the
// encoder is seeded with them once, each batch's indices are written as
// they are, and a page's min and max come from the dictionary's bounds.
// pqarrow's own dictionary-array path does the same but looks for the
// dictionary entries each call references with a hash pass over its
// indices, which cost as much again. The file is the one arrow-go writes:
// the same dictionary, in the same order, the same indices.

// dictionarySeeder is what arrow-go's dictionary encoders offer to be
// seeded with a dictionary (their own interface is internal).
type dictionarySeeder interface {
	PutDictionary(arrow.Array) error
	NumEntries() int
}

// dictionaryReady reports whether cw encodes with a dictionary it has not
// given up, so that indices into a seeded dictionary can be written.
func dictionaryReady(cw file.ColumnChunkWriter) bool {
	return cw.CurrentEncoder().Encoding() == parquet.Encodings.PlainDict
}

// buildsDictionary reports whether the writer builds dictionaries itself
// for top-level columns of type t.
func buildsDictionary(t arrow.DataType) bool {
	switch t.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.BINARY, arrow.LARGE_BINARY:
		return true
	}
	return false
}

// writeDictionary writes chunks, a row group's batches of one top-level
// string or binary column, to cw as a dictionary and indices, and reports
// whether it did: not when cw does not dictionary-encode, or when the
// distinct values would pass its dictionary page limit (arrow-go then
// falls back to plain on its own). Should the encoder still give up its
// dictionary part way, the rest is written as values.
func writeDictionary(ctx context.Context, cw file.ColumnChunkWriter, plan *shredPlan, t arrow.DataType, chunks []arrow.Array) (bool, error) {
	seeder, ok := cw.CurrentEncoder().(dictionarySeeder)
	if !ok || !dictionaryReady(cw) || seeder.NumEntries() != 0 {
		return false, nil
	}
	dict, distinct, indices, ok := dictionaryOf(t, chunks, cw.Properties().DictionaryPageSizeLimit())
	if !ok {
		return false, nil
	}
	defer func() {
		dict.Release()
		for _, idx := range indices {
			idx.Release()
		}
	}()
	if err := seeder.PutDictionary(dict); err != nil {
		return false, fmt.Errorf("dictionary: %w", err)
	}
	if seeder.NumEntries() != dict.Len() {
		return false, fmt.Errorf("dictionary: the encoder holds %d of its %d values", seeder.NumEntries(), dict.Len())
	}
	// Each page's min and max are the dictionary's, taken once in the
	// column's own order (arrow-go's UpdateFromArrow would skip an empty
	// string, which a page of values counts).
	var stats *metadata.ByteArrayStatistics
	var lo, hi parquet.ByteArray
	if s, ok := cw.PageStatistics().(*metadata.ByteArrayStatistics); ok && s != nil {
		stats = s
		whole := metadata.NewStatistics(cw.Descr(), memory.DefaultAllocator).(*metadata.ByteArrayStatistics)
		whole.Update(distinct, 0)
		lo, hi = whole.Min(), whole.Max()
	}
	batch := int(cw.Properties().WriteBatchSize())
	for c, chunk := range chunks {
		leaves, err := plan.shred(chunk)
		if err != nil {
			return true, err
		}
		def := leaves[0].def
		idx := indices[c]
		n := chunk.Len()
		for start := 0; start < n; start += batch {
			end := min(n, start+batch)
			if !dictionaryReady(cw) {
				rest := array.NewSlice(chunk, int64(start), int64(n))
				err := pqarrow.WriteArrowToColumn(ctx, cw, rest, levels(def, start, n), nil, plan.leafNullable[0])
				rest.Release()
				if err != nil {
					return true, err
				}
				break
			}
			part := array.NewSlice(idx, int64(start), int64(end))
			if stats != nil {
				nulls := part.NullN()
				stats.IncNulls(int64(nulls))
				stats.IncNumValues(int64(part.Len() - nulls))
				if nulls < part.Len() {
					stats.SetMinMax(lo, hi)
				}
			}
			err := cw.WriteDictIndices(part, levels(def, start, end), nil)
			part.Release()
			if err != nil {
				return true, err
			}
		}
	}
	return true, nil
}

func levels(def []int16, from, to int) []int16 {
	if def == nil {
		return nil
	}
	return def[from:to]
}

// dictionaryOf answers the distinct values of chunks in order of first
// appearance, as an array and as byte arrays, and per chunk int32 indices
// into them (null where the chunk's value is), or ok false when the values
// reach limit bytes as a plain-encoded dictionary page holds them (where
// arrow-go gives up a dictionary), or when more than half of the first
// sampleValues are distinct.
func dictionaryOf(t arrow.DataType, chunks []arrow.Array, limit int64) (dict arrow.Array, distinct []parquet.ByteArray, indices []arrow.Array, ok bool) {
	builder := array.NewBuilder(memory.DefaultAllocator, t)
	defer builder.Release()
	add := dictionaryAppender(builder)
	seen := make(map[string]int32, 64)
	var dictBytes int64
	values := 0
	slots := make([][]int32, len(chunks))
	for c, chunk := range chunks {
		off, n := chunk.Data().Offset(), chunk.Len()
		slot := make([]int32, off+n) // indexed as the chunk's bitmap is
		value := valueOf(chunk)
		for i := range n {
			if chunk.IsNull(i) {
				continue
			}
			v := value(i)
			k, found := seen[v]
			if values++; values == sampleValues && 2*len(seen) > values {
				// Mostly distinct (a column DictionaryAlways gives a
				// dictionary, or one that changed since it was sampled):
				// not worth building up to the limit only to give up.
				return nil, nil, nil, false
			}
			if !found {
				dictBytes += int64(len(v)) + 4
				if dictBytes >= limit || len(seen) == 1<<31-1 {
					return nil, nil, nil, false
				}
				k = int32(len(seen))
				seen[strings.Clone(v)] = k // v views the chunk's memory
				distinct = append(distinct, append(parquet.ByteArray{}, v...))
				add(v)
			}
			slot[off+i] = k
		}
		slots[c] = slot
	}
	indices = make([]arrow.Array, len(chunks))
	for c, chunk := range chunks {
		d := chunk.Data()
		data := array.NewData(arrow.PrimitiveTypes.Int32, d.Len(),
			[]*memory.Buffer{d.Buffers()[0], memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(slots[c]))}, nil, d.NullN(), d.Offset())
		indices[c] = array.MakeFromData(data)
		data.Release()
	}
	return builder.NewArray(), distinct, indices, true
}

// valueOf answers a view of value i of a string or binary array, as a
// string that must not outlive the array.
func valueOf(a arrow.Array) func(int) string {
	switch a := a.(type) {
	case *array.String:
		return a.Value
	case *array.LargeString:
		return a.Value
	case *array.Binary:
		return func(i int) string { return unsafeString(a.Value(i)) }
	case *array.LargeBinary:
		return func(i int) string { return unsafeString(a.Value(i)) }
	}
	panic("arrowfmt: no dictionary for " + a.DataType().String())
}

func dictionaryAppender(b array.Builder) func(string) {
	switch b := b.(type) {
	case *array.StringBuilder:
		return b.Append
	case *array.LargeStringBuilder:
		return b.Append
	case *array.BinaryBuilder: // binary and large binary
		return b.AppendString
	}
	panic("arrowfmt: no dictionary builder for " + b.Type().String())
}

func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
