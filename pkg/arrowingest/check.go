package arrowingest

import (
	"fmt"
)

// Header types of an IPC message (Message.header_type).
const (
	headerSchema          = 1
	headerDictionaryBatch = 2
	headerRecordBatch     = 3
)

// Slots of the tables read here, from Arrow's Message.fbs and Schema.fbs.
const (
	messageVersion    = 0
	messageHeaderType = 1
	messageHeader     = 2
	messageBodyLength = 3
	messageMetadata   = 4

	schemaFields   = 1
	schemaMetadata = 2
	schemaFeatures = 3

	fieldName       = 0
	fieldTypeType   = 2
	fieldType       = 3
	fieldDictionary = 4
	fieldChildren   = 5
	fieldMetadata   = 6

	keyValueKey   = 0
	keyValueValue = 1

	batchLength   = 0
	batchNodes    = 1
	batchBuffers  = 2
	batchCompress = 3
	batchVariadic = 4

	dictionaryID    = 0
	dictionaryData  = 1
	dictionaryDelta = 2

	typeUnion          = 14
	typeTimestamp      = 10
	unionTypeIDs       = 1
	timestampTimezone  = 1
	dictionaryEncIndex = 1
)

// message is one framed IPC message's metadata, checked.
type message struct {
	kind    uint8
	version int16
	bodyLen int64
	header  table
}

// parseMessage checks the Message table and answers its header.
func parseMessage(meta []byte) (message, error) {
	b := fbuf(meta)
	root, err := b.root()
	if err != nil {
		return message{}, err
	}
	kind, err := root.u8(messageHeaderType)
	if err != nil {
		return message{}, err
	}
	version, err := root.i16(messageVersion)
	if err != nil {
		return message{}, err
	}
	bodyLen, err := root.i64(messageBodyLength)
	if err != nil {
		return message{}, err
	}
	if bodyLen < 0 {
		return message{}, fmt.Errorf("negative body length %d", bodyLen)
	}
	if err := checkKeyValues(root, messageMetadata); err != nil {
		return message{}, err
	}
	header, ok, err := root.table(messageHeader)
	if err != nil {
		return message{}, err
	}
	if !ok {
		return message{}, fmt.Errorf("message has no header")
	}
	return message{kind: kind, version: version, bodyLen: bodyLen, header: header}, nil
}

func checkKeyValues(t table, slot int) error {
	kvs, err := t.tables(slot)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		if err := kv.str(keyValueKey); err != nil {
			return err
		}
		if err := kv.str(keyValueValue); err != nil {
			return err
		}
	}
	return nil
}

// schemaShape is what a checked schema tells the batch checks.
type schemaShape struct {
	fields int // every field, nested ones included
	// dictIDs are the dictionary ids of dictionary-encoded fields, depth
	// first, the order of dictionaryValueTypes.
	dictIDs []int64
}

// checkSchema walks the schema's fields, checking every offset and count
// against the metadata's length, the nesting depth and the field count.
func checkSchema(schema table, lim Limits) (schemaShape, error) {
	var shape schemaShape
	if err := checkKeyValues(schema, schemaMetadata); err != nil {
		return shape, err
	}
	if _, _, err := schema.vector(schemaFeatures, 8); err != nil {
		return shape, err
	}
	fields, err := schema.tables(schemaFields)
	if err != nil {
		return shape, err
	}
	var walk func(fs []table, depth int) error
	walk = func(fs []table, depth int) error {
		if depth > lim.MaxDepth {
			return fmt.Errorf("fields nest deeper than %d levels", lim.MaxDepth)
		}
		for _, f := range fs {
			// Counted before descending, so that children shared by many
			// parents cannot multiply the work.
			if shape.fields++; shape.fields > lim.MaxColumns {
				return fmt.Errorf("the schema has more than %d fields, nested ones included", lim.MaxColumns)
			}
			if err := checkField(f); err != nil {
				return err
			}
			if dict, ok, _ := f.table(fieldDictionary); ok {
				id, err := dict.i64(0)
				if err != nil {
					return err
				}
				shape.dictIDs = append(shape.dictIDs, id)
			}
			children, err := f.tables(fieldChildren)
			if err != nil {
				return err
			}
			if err := walk(children, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return shape, walk(fields, 1)
}

func checkField(f table) error {
	if err := f.str(fieldName); err != nil {
		return err
	}
	if err := checkKeyValues(f, fieldMetadata); err != nil {
		return err
	}
	kind, err := f.u8(fieldTypeType)
	if err != nil {
		return err
	}
	typ, ok, err := f.table(fieldType)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("a field has no type")
	}
	switch kind {
	case typeUnion:
		if _, _, err := typ.vector(unionTypeIDs, 4); err != nil {
			return err
		}
	case typeTimestamp:
		if err := typ.str(timestampTimezone); err != nil {
			return err
		}
	}
	if dict, ok, err := f.table(fieldDictionary); err != nil {
		return err
	} else if ok {
		if _, _, err := dict.table(dictionaryEncIndex); err != nil {
			return err
		}
	}
	return nil
}

// batchShape is what a checked record batch holds.
type batchShape struct {
	rows int64
	// decoded is the memory its buffers take once read: the body, or
	// the declared sizes of compressed buffers.
	decoded int64
}

// checkBatch checks a RecordBatch table against its body: row and node
// counts bounded by what the body can hold, every buffer inside the body,
// and compressed buffers' declared sizes within the batch limit, since
// arrow-go allocates a compressed buffer's declared size before reading.
//
// need is what arrow-go will read for the batch's schema: the vectors must
// hold at least that many entries, since it reads them without looking at
// their lengths.
func checkBatch(batch table, body []byte, lim Limits, need layout) (batchShape, error) {
	var shape batchShape
	rows, err := batch.i64(batchLength)
	if err != nil {
		return shape, err
	}
	// A row costs at least a bit in most types; this cap leaves room for
	// all-null and constant columns while refusing a batch that claims
	// billions of rows in a few bytes.
	maxRows := 8*int64(len(body)) + lim.MaxRowsWithoutData
	if rows < 0 || rows > maxRows {
		return shape, fmt.Errorf("a batch of %d body bytes claims %d rows (at most %d)", len(body), rows, maxRows)
	}
	shape.rows = rows
	start, n, err := batch.vector(batchNodes, 16)
	if err != nil {
		return shape, err
	}
	if n < need.nodes {
		return shape, fmt.Errorf("%d field nodes for a schema of %d", n, need.nodes)
	}
	for i := range n {
		length, _ := batch.b.i64(start + 16*i)
		nulls, _ := batch.b.i64(start + 16*i + 8)
		if length < 0 || length > maxRows || nulls < 0 || nulls > length {
			return shape, fmt.Errorf("field node %d claims %d values with %d nulls", i, length, nulls)
		}
	}
	compressed := false
	if c, ok, err := batch.table(batchCompress); err != nil {
		return shape, err
	} else if ok {
		codec, err := c.u8(0)
		if err != nil {
			return shape, err
		}
		if codec > 1 { // LZ4_FRAME or ZSTD
			return shape, fmt.Errorf("unknown body compression codec %d", codec)
		}
		compressed = true
	}
	start, n, err = batch.vector(batchBuffers, 16)
	if err != nil {
		return shape, err
	}
	var decoded int64
	for i := range n {
		off, _ := batch.b.i64(start + 16*i)
		length, _ := batch.b.i64(start + 16*i + 8)
		if off < 0 || length < 0 || off > int64(len(body)) || length > int64(len(body))-off {
			return shape, fmt.Errorf("buffer %d (offset %d, length %d) lies outside the %d-byte body", i, off, length, len(body))
		}
		if !compressed || length == 0 {
			decoded += length
			continue
		}
		if length < 8 {
			return shape, fmt.Errorf("compressed buffer %d is %d bytes, shorter than its size prefix", i, length)
		}
		size, _ := fbuf(body).i64(int(off))
		switch {
		case size == -1: // stored uncompressed
			decoded += length - 8
		case size < 0:
			return shape, fmt.Errorf("compressed buffer %d declares %d bytes", i, size)
		default:
			decoded += size
		}
		if decoded > lim.MaxBatchBytes {
			break
		}
	}
	if decoded > lim.MaxBatchBytes {
		return shape, fmt.Errorf("the batch decompresses to more than %d bytes", lim.MaxBatchBytes)
	}
	shape.decoded = decoded
	vstart, vn, err := batch.vector(batchVariadic, 8)
	if err != nil {
		return shape, err
	}
	if vn < need.views {
		return shape, fmt.Errorf("%d variadic buffer counts for %d view columns", vn, need.views)
	}
	var variadic, viewBuffers int64
	for i := range vn {
		c, _ := batch.b.i64(vstart + 8*i)
		if c < 0 || c > int64(n) {
			return shape, fmt.Errorf("variadic buffer count %d of %d buffers", c, n)
		}
		variadic += c
		if i < need.views {
			viewBuffers += c
		}
	}
	if int64(n) < int64(need.buffers)+viewBuffers {
		return shape, fmt.Errorf("%d buffers for a schema of %d", n, int64(need.buffers)+viewBuffers)
	}
	if variadic > int64(n) {
		return shape, fmt.Errorf("variadic buffer counts add to %d of %d buffers", variadic, n)
	}
	return shape, nil
}
