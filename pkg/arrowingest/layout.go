package arrowingest

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
)

// arrow-go reads a batch's field nodes, buffers and variadic counts by
// index without checking the vectors' lengths: a batch whose vectors are
// shorter than its schema needs makes it read past them, taking whatever
// bytes follow for buffer offsets and sizes (and allocating a compressed
// buffer's forged size: 200 TB, found by FuzzPipeline). layout counts what
// arrow-go's loader will read for a schema, so that checkBatch can require
// the vectors to hold at least that, and so check every entry it reads.

// layout is what loading a batch of some columns reads.
type layout struct {
	nodes, buffers int
	views          int // binary and string view columns: one variadic count each
}

// metadataV5 is Arrow's MetadataVersion V5, from which unions have no
// validity bitmap.
const metadataV5 = 4

func (l *layout) add(dt arrow.DataType, version int16) error {
	validity := 1
	switch dt.ID() {
	case arrow.NULL, arrow.RUN_END_ENCODED:
		validity = 0
	case arrow.SPARSE_UNION, arrow.DENSE_UNION:
		if version >= metadataV5 {
			validity = 0
		}
	}
	l.nodes++
	switch t := dt.(type) {
	case *arrow.NullType:
	case *arrow.DictionaryType:
		l.buffers += 2 // the indices
	case *arrow.BinaryType, *arrow.StringType, *arrow.LargeStringType, *arrow.LargeBinaryType:
		l.buffers += validity + 2
	case arrow.BinaryViewDataType:
		l.buffers += validity + 1
		l.views++
	case *arrow.ListType, *arrow.LargeListType, *arrow.MapType:
		l.buffers += validity + 1
		return l.children(t.(arrow.NestedType), version)
	case *arrow.ListViewType, *arrow.LargeListViewType:
		l.buffers += validity + 2
		return l.children(t.(arrow.NestedType), version)
	case *arrow.FixedSizeListType, *arrow.StructType:
		l.buffers += validity
		return l.children(t.(arrow.NestedType), version)
	case *arrow.RunEndEncodedType:
		return l.children(t, version)
	case arrow.UnionType:
		l.buffers += validity + 1
		if t.Mode() == arrow.DenseMode {
			l.buffers++
		}
		return l.children(t, version)
	case arrow.ExtensionType:
		l.nodes--
		return l.add(t.StorageType(), version)
	case arrow.FixedWidthDataType:
		l.buffers += validity + 1
	default:
		return fmt.Errorf("type %s has no known layout", dt)
	}
	return nil
}

func (l *layout) children(t arrow.NestedType, version int16) error {
	for _, f := range t.Fields() {
		if err := l.add(f.Type, version); err != nil {
			return err
		}
	}
	return nil
}

// schemaLayout answers what a record batch of schema reads.
func schemaLayout(schema *arrow.Schema, version int16) (layout, error) {
	var l layout
	for _, f := range schema.Fields() {
		if err := l.add(f.Type, version); err != nil {
			return l, err
		}
	}
	return l, nil
}

// dictionaryValueTypes answers the value type of each dictionary the
// schema's fields use, by field order: checkSchema collects the ids in the
// same depth-first order from the schema message.
func dictionaryValueTypes(schema *arrow.Schema) []arrow.DataType {
	var out []arrow.DataType
	var walk func(dt arrow.DataType)
	walk = func(dt arrow.DataType) {
		if d, ok := dt.(*arrow.DictionaryType); ok {
			out = append(out, d.ValueType)
			dt = d.ValueType
		}
		if ext, ok := dt.(arrow.ExtensionType); ok {
			dt = ext.StorageType()
		}
		if n, ok := dt.(arrow.NestedType); ok {
			for _, f := range n.Fields() {
				walk(f.Type)
			}
		}
	}
	for _, f := range schema.Fields() {
		walk(f.Type)
	}
	return out
}
