package arrowfmt

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/parquet"
)

// Why these encodings (measured on the 1M-row customer tables, zstd):
// arrow-go tries a dictionary on every column and falls back to plain once
// it passes 1 MiB, keeping the dictionary pages already cut. On a unique or
// sorted column that costs both ways: a sorted int64 id took 3.2 MB and
// 257 ms with a dictionary attempt, 1.1 MB and 37 ms plain, 1.7 KB and
// 5 ms delta encoded; unique emails 0.97 MB dictionary, 0.39 MB plain,
// 36 KB as delta strings (shared prefixes). Low-cardinality columns are the
// other way round (8 first names: 0.38 MB dictionary, 1.16 MB plain). So
// the first row group decides, column by column, from a sample.

// sampleValues bounds the values sampled per column; a column gets a
// dictionary when the sample holds at most half as many distinct values.
const sampleValues = 4096

// columnProperties answers each top-level primitive column's dictionary
// and encoding, chosen from the first row group. Nested columns keep the
// defaults (dictionary, falling back to plain).
func columnProperties(s *arrow.Schema, first []arrow.RecordBatch, o ParquetOptions) []parquet.WriterProperty {
	if o.Dictionary == DictionaryAlways {
		return nil
	}
	pq, err := parquetSchema(s, parquet.NewWriterProperties(o.baseProperties()...))
	if err != nil {
		return nil
	}
	// Properties are keyed by the dotted path, which a top-level "a.b" and
	// a struct a's field b share: a path that is not one column's alone
	// keeps the defaults.
	paths := map[string]int{}
	for i := range pq.NumColumns() {
		paths[pq.Column(i).Path()]++
	}
	var props []parquet.WriterProperty
	leaf := 0
	for k, f := range s.Fields() {
		col := pq.Column(leaf)
		leaf += leafCount(f.Type)
		if isNested(f.Type) || col.Path() != f.Name || paths[f.Name] != 1 {
			continue
		}
		path := parquet.ColumnPath{f.Name}
		dict := false
		switch {
		case f.Type.ID() == arrow.DICTIONARY:
			dict = o.Dictionary == DictionaryAuto
		case f.Type.ID() == arrow.BOOL || f.Type.ID() == arrow.NULL:
		case o.Dictionary == DictionaryAuto && o.Dictionaries != nil:
			dict = k < len(o.Dictionaries) && o.Dictionaries[k]
		case o.Dictionary == DictionaryAuto:
			dict = fewDistinct(first, k)
		}
		props = append(props, parquet.WithDictionaryPath(path, dict))
		if dict || f.Type.ID() == arrow.NULL {
			continue
		}
		switch col.PhysicalType() {
		case parquet.Types.Int32, parquet.Types.Int64:
			props = append(props, parquet.WithEncodingPath(path, parquet.Encodings.DeltaBinaryPacked))
		case parquet.Types.ByteArray:
			props = append(props, parquet.WithEncodingPath(path, parquet.Encodings.DeltaByteArray))
		}
	}
	return props
}

// leafCount answers how many Parquet columns a field becomes.
func leafCount(t arrow.DataType) int {
	switch t := t.(type) {
	case *arrow.ListType:
		return leafCount(t.Elem())
	case *arrow.LargeListType:
		return leafCount(t.Elem())
	case *arrow.FixedSizeListType:
		return leafCount(t.Elem())
	case *arrow.MapType:
		return leafCount(t.KeyType()) + leafCount(t.ItemType())
	case *arrow.StructType:
		n := 0
		for _, f := range t.Fields() {
			n += leafCount(f.Type)
		}
		return n
	case arrow.ExtensionType:
		return leafCount(t.StorageType())
	}
	return 1
}

// ChooseDictionaries answers, for each top-level column of schema, whether
// the automatic choice would dictionary-encode it, sampling batches: for
// ParquetOptions.Dictionaries, so that the many files of one output are
// encoded alike and none samples again.
func ChooseDictionaries(schema *arrow.Schema, sample []arrow.RecordBatch) []bool {
	out := make([]bool, schema.NumFields())
	for k, f := range schema.Fields() {
		switch f.Type.ID() {
		case arrow.DICTIONARY:
			out[k] = true
		case arrow.BOOL, arrow.NULL:
		default:
			out[k] = fewDistinct(sample, k)
		}
	}
	return out
}

// fewDistinct samples column k of the row group, evenly spread, and
// reports whether at most half the sampled values are distinct.
func fewDistinct(group []arrow.RecordBatch, k int) bool {
	var total int
	for _, b := range group {
		total += b.Column(k).Len() - b.Column(k).NullN()
	}
	if total == 0 {
		return true
	}
	stride := max(1, total/sampleValues)
	seen := make(map[string]struct{}, 256)
	sampled, at := 0, 0
	for _, b := range group {
		col := b.Column(k)
		key := sampleKey(col)
		for i := 0; i < col.Len(); i++ {
			if col.IsNull(i) {
				continue
			}
			if at%stride == 0 {
				seen[key(i)] = struct{}{}
				sampled++
			}
			at++
		}
	}
	return 2*len(seen) <= sampled
}

// sampleKey answers a key for value i of col that equals another's when
// the values do: a view of the value's bytes where the layout has them in
// one place (strings, binaries, fixed-width types), which the map keeps
// only while col lives, and its text otherwise. ValueStr allocated a
// string per sampled value: 20 ms of CPU for each file of the customer
// 360 table.
func sampleKey(col arrow.Array) func(int) string {
	if buildsDictionary(col.DataType()) {
		return valueOf(col)
	}
	d := col.Data()
	fw, ok := col.DataType().(arrow.FixedWidthDataType)
	if !ok || col.DataType().ID() == arrow.BOOL || fw.BitWidth()%8 != 0 || len(d.Buffers()) != 2 || d.Buffers()[1] == nil {
		return col.ValueStr
	}
	width, off, data := fw.BitWidth()/8, d.Offset(), d.Buffers()[1].Bytes()
	return func(i int) string { return unsafeString(data[(off+i)*width : (off+i+1)*width]) }
}
