// Package arrowingest reads an Arrow IPC stream sent by a caller who cannot
// be trusted, so that no input can crash the process or make it allocate
// without bound.
//
// arrow-go's ipc.NewReader is not made for that: its message reader applies
// no limits of ours, schema decoding trusts the counts in the metadata,
// compressed buffers are allocated at the size they declare, and reading
// the values of an invalid batch panics. This package frames the messages
// itself, checks each one's metadata against its length and its body
// (bounded FlatBuffers reads, limits on metadata, body, decompressed size,
// fields and nesting) before arrow-go decodes it, decodes under recover,
// and fully validates every batch before handing it on. Every refusal is
// an *Error saying where in the stream it happened.
package arrowingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Limits bound what one stream may ask of the process.
type Limits struct {
	// MaxMetadataBytes bounds one message's metadata (a schema with
	// thousands of columns takes a few hundred KiB).
	MaxMetadataBytes int64
	// MaxBatchBytes bounds one message's body, and the memory its
	// buffers take once decompressed.
	MaxBatchBytes int64
	// MaxColumns bounds the schema's fields, nested ones included.
	MaxColumns int
	// MaxDepth bounds how deep fields nest.
	MaxDepth int
	// MaxRowsWithoutData is how many rows a batch may claim beyond eight
	// per body byte (all-null columns carry no values).
	MaxRowsWithoutData int64
	// Budget, when set, is charged for each message body before it is
	// allocated and credited once the last batch decoded from it is
	// released: a bound on what many streams hold together, beyond each
	// one's MaxBatchBytes.
	Budget Budget
}

// Slicer is a source that keeps what it receives in buffers of its own
// (a gRPC stream's messages): the reader takes a message body that lies
// whole in one of them as it is, rather than copying it into a buffer of
// its own, so that each received byte is allocated once (#26).
type Slicer interface {
	// Slice answers the next n bytes as a slice of a buffer the source
	// will not write to again (its capacity n), and consumes them; or nil, consuming
	// nothing, when they are not in one buffer (they are then read). An
	// error is the source's, as Read's.
	Slice(n int) ([]byte, error)
}

// Budget is memory shared by streams.
type Budget interface {
	// Acquire takes n bytes, waiting while they are spent; its error is
	// answered as the reader's (not the data's fault).
	Acquire(n int64) error
	// Release gives back n bytes taken.
	Release(n int64)
}

// budgetFree credits a budget when the body it was charged for is freed.
type budgetFree struct{ b Budget }

func (f budgetFree) Allocate(n int) []byte { return memory.DefaultAllocator.Allocate(n) }
func (f budgetFree) Reallocate(n int, b []byte) []byte {
	return memory.DefaultAllocator.Reallocate(n, b)
}
func (f budgetFree) Free(b []byte) { f.b.Release(int64(len(b))) }

// DefaultLimits are the limits when none are configured.
var DefaultLimits = Limits{
	MaxMetadataBytes:   4 << 20,
	MaxBatchBytes:      64 << 20,
	MaxColumns:         10000,
	MaxDepth:           64,
	MaxRowsWithoutData: 1 << 16,
}

func (l Limits) orDefaults() Limits {
	d := DefaultLimits
	d.Budget = l.Budget
	if l.MaxMetadataBytes > 0 {
		d.MaxMetadataBytes = l.MaxMetadataBytes
	}
	if l.MaxBatchBytes > 0 {
		d.MaxBatchBytes = l.MaxBatchBytes
	}
	if l.MaxColumns > 0 {
		d.MaxColumns = l.MaxColumns
	}
	if l.MaxDepth > 0 {
		d.MaxDepth = l.MaxDepth
	}
	if l.MaxRowsWithoutData > 0 {
		d.MaxRowsWithoutData = l.MaxRowsWithoutData
	}
	return d
}

// Error is a stream the reader refuses: what was wrong and where.
type Error struct {
	// Offset is the stream byte where the message at fault starts.
	Offset int64
	// Batch is the 1-based number of the record batch at fault; 0 for
	// the schema and for faults between batches.
	Batch int
	// Message says what is wrong.
	Message string
	// EndedEarly is a stream that stopped before its end-of-stream marker
	// (empty, cut inside a message, or between two): what arrived may be
	// sound, and its rest may still come.
	EndedEarly bool
}

func (e *Error) Error() string {
	where := fmt.Sprintf("at byte %d", e.Offset)
	if e.Batch > 0 {
		where = fmt.Sprintf("in record batch %d, at byte %d", e.Batch, e.Offset)
	}
	return fmt.Sprintf("Arrow IPC stream %s: %s", where, e.Message)
}

// continuation starts every message of the current IPC format.
const continuation = 0xFFFFFFFF

// Reader reads validated record batches.
type Reader struct {
	src     io.Reader
	lim     Limits
	mem     memory.Allocator
	msgs    *messages
	ipc     *ipc.Reader
	batches int
	rec     arrow.RecordBatch
	err     error
}

// NewReader reads and checks the stream's schema message. mem allocates
// what batches need beyond their bodies (nil means Go's allocator).
func NewReader(src io.Reader, lim Limits, mem memory.Allocator) (*Reader, error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	r := &Reader{src: src, lim: lim.orDefaults(), mem: mem}
	r.msgs = &messages{r: r, dictBytes: map[int64]int64{}}
	r.msgs.refs = 1
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = r.msgs.fault(0, fmt.Sprintf("the schema cannot be decoded: %v", p))
			}
		}()
		r.ipc, err = ipc.NewReaderFromMessageReader(r.msgs, ipc.WithAllocator(mem))
	}()
	if err != nil {
		return nil, r.msgs.explain(err, 0)
	}
	for _, f := range r.ipc.Schema().Fields() {
		if msg := checkDecimals(f.Name, f.Type); msg != "" {
			r.ipc.Release()
			return nil, r.msgs.fault(0, "invalid schema: "+msg)
		}
	}
	return r, nil
}

// checkDecimals answers what is wrong with a decimal type under name, or
// "": arrow-go decodes any precision and scale, and panics formatting a
// value whose scale its type cannot hold.
func checkDecimals(name string, dt arrow.DataType) string {
	switch t := dt.(type) {
	case arrow.DecimalType:
		maxPrecision := map[arrow.Type]int32{arrow.DECIMAL32: 9, arrow.DECIMAL64: 18, arrow.DECIMAL128: 38, arrow.DECIMAL256: 76}[t.ID()]
		if p := t.GetPrecision(); p < 1 || p > maxPrecision {
			return fmt.Sprintf("column %q: %s precision %d is not between 1 and %d", name, t.Name(), p, maxPrecision)
		}
		if s := t.GetScale(); s < -maxPrecision || s > maxPrecision {
			return fmt.Sprintf("column %q: %s scale %d is not between -%d and %d", name, t.Name(), s, maxPrecision, maxPrecision)
		}
	case arrow.NestedType:
		for _, f := range t.Fields() {
			if msg := checkDecimals(name+"."+f.Name, f.Type); msg != "" {
				return msg
			}
		}
	case *arrow.DictionaryType:
		return checkDecimals(name, t.ValueType)
	case arrow.ExtensionType:
		return checkDecimals(name, t.StorageType())
	}
	return ""
}

// Schema answers the stream's schema.
func (r *Reader) Schema() *arrow.Schema { return r.ipc.Schema() }

// Offset answers how many bytes of the stream were read.
func (r *Reader) Offset() int64 { return r.msgs.offset }

// Batches answers how many record batches were read.
func (r *Reader) Batches() int { return r.batches }

// Next answers the next record batch, fully validated; the caller releases
// it. It answers io.EOF after the stream's end-of-stream marker, an *Error
// for input it refuses, and the source's own error when reading fails.
func (r *Reader) Next() (rec arrow.RecordBatch, err error) {
	if r.err != nil {
		return nil, r.err
	}
	defer func() {
		if p := recover(); p != nil {
			rec, err = nil, r.msgs.fault(r.batches, fmt.Sprintf("the batch cannot be decoded: %v", p))
		}
		if err != nil && err != io.EOF {
			r.err = err
		}
	}()
	if !r.ipc.Next() {
		if err := r.ipc.Err(); err != nil {
			return nil, r.msgs.explain(err, r.batches+1)
		}
		if r.msgs.srcErr != nil {
			return nil, r.msgs.srcErr
		}
		return nil, io.EOF
	}
	r.batches++
	rec = r.ipc.RecordBatch()
	if err := validate(rec); err != nil {
		return nil, r.msgs.fault(r.batches, err.Error())
	}
	rec.Retain()
	return rec, nil
}

// validate checks every value of rec: reading an invalid batch's values
// panics, which a writer must never meet.
func validate(rec arrow.RecordBatch) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("invalid values: %v", p)
		}
	}()
	// array.ValidateRecordFull, column by column, but for null columns:
	// arrow-go's IPC loader gives them no buffers and its validation then
	// demands one, refusing every valid null column. A null column has no
	// values to check, only its length.
	for k, col := range rec.Columns() {
		if col.Len() != int(rec.NumRows()) {
			return fmt.Errorf("invalid values: column %d (%s) has %d rows of the batch's %d", k, rec.Schema().Field(k).Name, col.Len(), rec.NumRows())
		}
		if col.DataType().ID() == arrow.NULL {
			continue
		}
		if err := array.ValidateFull(col); err != nil {
			return fmt.Errorf("invalid values: column %d (%s): %s", k, rec.Schema().Field(k).Name, withoutValues(err))
		}
	}
	return nil
}

// withoutValues answers arrow-go's validation message without the value
// it quotes: arrow-go puts an invalid UTF-8 string whole into its error
// (#22: a 3 MiB value came back in the answer and in two log lines), and
// values are customers' data, for no error or log.
func withoutValues(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "is not valid utf8"); i >= 0 {
		return msg[:i] + "is not valid UTF-8"
	}
	const most = 300
	if len(msg) > most {
		msg = msg[:most] + "..."
	}
	return msg
}

// Release frees what the reader holds.
func (r *Reader) Release() {
	if r.ipc != nil {
		r.ipc.Release()
	}
	r.msgs.Release()
}

// messages frames and checks IPC messages for arrow-go's reader.
type messages struct {
	r      *Reader
	refs   int
	offset int64 // bytes read so far
	start  int64 // where the current message started
	n      int   // messages read
	schema schemaShape
	cur    *ipc.Message
	ended  bool
	srcErr error // the source failed: not the caller's data at fault

	dictBytes map[int64]int64
	dictTotal int64
}

// layoutOf answers what arrow-go reads for a record batch (dictionary id
// -1) or for dictionary id's batch, once the schema is decoded.
func (m *messages) layoutOf(id int64, version int16) (layout, error) {
	if m.r.ipc == nil {
		return layout{}, errors.New("a batch before the schema is decoded")
	}
	schema := m.r.ipc.Schema()
	if id < 0 {
		return schemaLayout(schema, version)
	}
	types := dictionaryValueTypes(schema)
	if len(types) != len(m.schema.dictIDs) {
		return layout{}, fmt.Errorf("%d dictionary fields, %d dictionary ids", len(types), len(m.schema.dictIDs))
	}
	for k, known := range m.schema.dictIDs {
		if known == id {
			var l layout
			return l, l.add(types[k], version)
		}
	}
	return layout{}, fmt.Errorf("no field uses dictionary %d", id)
}

func (m *messages) Retain() { m.refs++ }

func (m *messages) Release() {
	if m.refs--; m.refs == 0 && m.cur != nil {
		m.cur.Release()
		m.cur = nil
	}
}

func (m *messages) fault(batch int, msg string) *Error {
	return &Error{Offset: m.start, Batch: batch, Message: msg}
}

// early is the stream ending before its end-of-stream marker.
func (m *messages) early(batch int, msg string) *Error {
	e := m.fault(batch, msg)
	e.EndedEarly = true
	return e
}

// explain turns what arrow-go's reader answered into an *Error, unless it
// is one already or the source failed.
func (m *messages) explain(err error, batch int) error {
	if m.srcErr != nil {
		return m.srcErr
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return m.fault(batch, err.Error())
}

// read fills p from the source, telling its failure from the stream's end.
func (m *messages) read(p []byte) (eof bool, err error) {
	n, err := io.ReadFull(m.r.src, p)
	m.offset += int64(n)
	switch {
	case err == nil:
		return false, nil
	case n == 0 && errors.Is(err, io.EOF):
		return true, nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return false, m.early(m.batch(), fmt.Sprintf("the stream ends inside a message (%d bytes short)", len(p)-n))
	}
	m.srcErr = err
	return false, err
}

// batch answers the number the next record batch would have.
func (m *messages) batch() int {
	if m.n == 0 {
		return 0 // the schema comes first
	}
	return m.r.batches + 1
}

// Message implements ipc.MessageReader.
func (m *messages) Message() (*ipc.Message, error) {
	if m.ended {
		return nil, io.EOF
	}
	if m.cur != nil {
		m.cur.Release()
		m.cur = nil
	}
	m.start = m.offset
	var word [4]byte
	eof, err := m.read(word[:])
	if err != nil {
		return nil, err
	}
	if eof {
		return nil, m.early(m.batch(), "the stream ends without Arrow's end-of-stream marker: close the IPC stream writer before closing the stream")
	}
	length := binary.LittleEndian.Uint32(word[:])
	if length == continuation {
		if eof, err = m.read(word[:]); err == nil && eof {
			err = m.early(m.batch(), "the stream ends inside a message (4 bytes short)")
		}
		if err != nil {
			return nil, err
		}
		length = binary.LittleEndian.Uint32(word[:])
	}
	if length == 0 {
		return nil, m.end()
	}
	if int64(length) > m.r.lim.MaxMetadataBytes {
		return nil, m.fault(m.batch(), fmt.Sprintf("message metadata of %d bytes is over the limit of %d", length, m.r.lim.MaxMetadataBytes))
	}
	meta := make([]byte, length)
	if eof, err = m.read(meta); err == nil && eof {
		err = m.early(m.batch(), fmt.Sprintf("the stream ends inside a message (%d bytes short)", length))
	}
	if err != nil {
		return nil, err
	}
	msg, err := parseMessage(meta)
	if err != nil {
		return nil, m.fault(m.batch(), "invalid message metadata: "+err.Error())
	}
	if msg.bodyLen > m.r.lim.MaxBatchBytes {
		return nil, m.fault(m.batch(), fmt.Sprintf("a message body of %d bytes is over the limit of %d: send smaller record batches", msg.bodyLen, m.r.lim.MaxBatchBytes))
	}
	if err := m.check(msg); err != nil {
		return nil, err
	}
	budget := m.r.lim.Budget
	if budget != nil && msg.bodyLen > 0 {
		if err := budget.Acquire(msg.bodyLen); err != nil {
			m.srcErr = err
			return nil, err
		}
	}
	body, err := m.body(msg.bodyLen)
	if err == nil {
		err = m.checkBody(msg, body)
	}
	if err != nil {
		if budget != nil && msg.bodyLen > 0 {
			budget.Release(msg.bodyLen)
		}
		return nil, err
	}
	m.n++
	mb, bb := memory.NewBufferBytes(meta), memory.NewBufferBytes(body)
	if budget != nil && len(body) > 0 {
		bb = memory.NewBufferWithAllocator(body, budgetFree{budget})
	}
	m.cur = ipc.NewMessage(mb, bb)
	mb.Release()
	bb.Release()
	return m.cur, nil
}

// body reads a message body of n bytes: from the source's own buffer when
// it is a Slicer holding all of it, 8-byte aligned as arrow-go reads
// values; otherwise into a buffer of its own.
func (m *messages) body(n int64) ([]byte, error) {
	if s, ok := m.r.src.(Slicer); ok && n > 0 {
		b, err := s.Slice(int(n))
		if err != nil {
			m.srcErr = err
			return nil, err
		}
		if b != nil {
			m.offset += n
			if uintptr(unsafe.Pointer(unsafe.SliceData(b)))%8 != 0 {
				b = append([]byte(nil), b...)
			}
			return b, nil
		}
	}
	body := make([]byte, n)
	eof, err := m.read(body)
	if err == nil && eof && n > 0 {
		err = m.early(m.batch(), fmt.Sprintf("the stream ends inside a message (%d bytes short)", n))
	}
	return body, err
}

// check checks a message's header before its body is read.
func (m *messages) check(msg message) error {
	first := m.n == 0
	switch {
	case first && msg.kind != headerSchema:
		return m.fault(0, "the stream must start with a schema message")
	case !first && msg.kind == headerSchema:
		return m.fault(m.batch(), "a second schema message: one stream has one schema")
	case msg.kind == headerSchema:
		shape, err := checkSchema(msg.header, m.r.lim)
		if err != nil {
			return m.fault(0, "invalid schema: "+err.Error())
		}
		m.schema = shape
	case msg.kind != headerRecordBatch && msg.kind != headerDictionaryBatch:
		return m.fault(m.batch(), fmt.Sprintf("message type %d is not a record or dictionary batch", msg.kind))
	}
	return nil
}

// checkBody checks a batch's metadata against its body.
func (m *messages) checkBody(msg message, body []byte) error {
	switch msg.kind {
	case headerRecordBatch:
		need, err := m.layoutOf(-1, msg.version)
		if err == nil {
			_, err = checkBatch(msg.header, body, m.r.lim, need)
		}
		if err != nil {
			return m.fault(m.batch(), "invalid record batch: "+err.Error())
		}
	case headerDictionaryBatch:
		data, ok, err := msg.header.table(dictionaryData)
		if err == nil && !ok {
			err = errors.New("no data")
		}
		var shape batchShape
		var need layout
		if err == nil {
			id, _ := msg.header.i64(dictionaryID)
			need, err = m.layoutOf(id, msg.version)
		}
		if err == nil {
			shape, err = checkBatch(data, body, m.r.lim, need)
		}
		if err != nil {
			return m.fault(m.batch(), "invalid dictionary batch: "+err.Error())
		}
		id, _ := msg.header.i64(dictionaryID)
		delta, _ := msg.header.u8(dictionaryDelta)
		// Dictionaries stay in memory for the whole stream, deltas
		// growing them: all of them together keep to one batch's limit.
		if delta == 0 {
			m.dictTotal -= m.dictBytes[id]
			m.dictBytes[id] = 0
		}
		m.dictBytes[id] += shape.decoded
		m.dictTotal += shape.decoded
		if m.dictTotal > m.r.lim.MaxBatchBytes {
			return m.fault(m.batch(), fmt.Sprintf("dictionaries add up to more than %d bytes", m.r.lim.MaxBatchBytes))
		}
	}
	return nil
}

// end checks that nothing follows the end-of-stream marker.
func (m *messages) end() error {
	m.ended = true
	var one [1]byte
	n, err := m.r.src.Read(one[:])
	for n == 0 && err == nil {
		n, err = m.r.src.Read(one[:])
	}
	if n > 0 {
		return m.fault(m.batch(), "bytes follow the end-of-stream marker")
	}
	if !errors.Is(err, io.EOF) {
		m.srcErr = err
		return err
	}
	return io.EOF
}
