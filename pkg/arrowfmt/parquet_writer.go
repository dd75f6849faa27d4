package arrowfmt

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/arrow-go/v18/parquet/schema"
)

// baseProperties are the properties every column shares; columnProperties
// adds each column's dictionary and encoding.
func (o ParquetOptions) baseProperties() []parquet.WriterProperty {
	codec := map[Codec]compress.Compression{
		Snappy: compress.Codecs.Snappy, Zstd: compress.Codecs.Zstd, Gzip: compress.Codecs.Gzip, Uncompressed: compress.Codecs.Uncompressed,
	}[o.Codec]
	page := parquet.DataPageV1
	if o.DataPage == DataPageV2 {
		page = parquet.DataPageV2
	}
	props := []parquet.WriterProperty{
		parquet.WithCompression(codec),
		parquet.WithMaxRowGroupLength(o.rowGroupRows()),
		parquet.WithDictionaryDefault(o.Dictionary != DictionaryNever),
		parquet.WithVersion(parquet.V2_LATEST),
		parquet.WithDataPageVersion(page),
		// Decimals of up to 18 digits as INT32/INT64 (DECIMAL logical
		// type), which readers take as decimals and which encode far
		// smaller than 16-byte fixed-length binaries.
		parquet.WithStoreDecimalAsInteger(true),
	}
	if o.pageBytes > 0 {
		props = append(props, parquet.WithDataPageSize(o.pageBytes), parquet.WithDictionaryPageSizeLimit(o.pageBytes))
	}
	return props
}

func (o ParquetOptions) rowGroupRows() int64 {
	if o.RowGroupRows <= 0 {
		return DefaultRowGroupRows
	}
	return o.RowGroupRows
}

func (o ParquetOptions) rowGroupBytes() int64 {
	if o.RowGroupBytes <= 0 {
		return DefaultRowGroupBytes
	}
	return o.RowGroupBytes
}

func arrowProperties() pqarrow.ArrowWriterProperties {
	return pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema())
}

// parquetSchema is pqarrow.ToParquet answering, rather than raising, the
// panics it raises for some types (a decimal whose scale exceeds its
// precision, when stored as an integer).
func parquetSchema(s *arrow.Schema, props *parquet.WriterProperties) (pq *schema.Schema, err error) {
	defer func() {
		if r := recover(); r != nil {
			pq, err = nil, fmt.Errorf("%v", r)
		}
	}()
	return pqarrow.ToParquet(s, props, arrowProperties())
}

// CheckParquet answers an *UnsupportedError for the first column Parquet
// cannot carry, before any byte is written.
func CheckParquet(schema *arrow.Schema, o ParquetOptions) error {
	schema = ParquetSchema(schema)
	props := parquet.NewWriterProperties(o.baseProperties()...)
	if _, err := parquetSchema(schema, props); err == nil {
		return nil
	}
	for _, f := range schema.Fields() {
		if _, err := parquetSchema(arrow.NewSchema([]arrow.Field{f}, nil), props); err != nil {
			return &UnsupportedError{Column: f.Name, Type: f.Type, Format: "Parquet"}
		}
	}
	return fmt.Errorf("the schema cannot be written as Parquet")
}

// NewParquet checks schema and answers a writer to w.
func NewParquet(w io.Writer, schema *arrow.Schema, o ParquetOptions) (*Parquet, error) {
	if err := CheckParquet(schema, o); err != nil {
		return nil, err
	}
	p := &Parquet{w: w, schema: ParquetSchema(schema), opts: o, rgRows: o.rowGroupRows(), arrowProps: arrowProperties()}
	if !o.Serial {
		p.plans = plansFor(p.schema, parquet.NewWriterProperties(o.baseProperties()...))
	}
	leaf := 0
	for k, plan := range p.plans {
		p.leafStart = append(p.leafStart, leaf)
		leaf += plan.leafCount
		// Until a row group is measured: nested and variable-width columns
		// cost most.
		switch f := p.schema.Field(k); {
		case isNested(f.Type):
			p.cost = append(p.cost, 3)
		case arrow.IsBinaryLike(f.Type.ID()) || f.Type.ID() == arrow.DICTIONARY:
			p.cost = append(p.cost, 2)
		default:
			p.cost = append(p.cost, 1)
		}
	}
	return p, nil
}

// plansFor answers each column's shredding plan, or nil when a column's
// type is not one shredding knows or its levels disagree with the Parquet
// schema pqarrow makes: then the file is written serially.
func plansFor(s *arrow.Schema, props *parquet.WriterProperties) []*shredPlan {
	pq, err := parquetSchema(s, props)
	if err != nil {
		return nil
	}
	var plans []*shredPlan
	leaf := 0
	for _, f := range s.Fields() {
		plan, ok := planShred(f)
		if !ok {
			return nil
		}
		for k := range plan.leafCount {
			if leaf+k >= pq.NumColumns() {
				return nil
			}
			c := pq.Column(leaf + k)
			if int16(c.MaxDefinitionLevel()) != plan.maxDef[k] || int16(c.MaxRepetitionLevel()) != plan.maxRep[k] {
				return nil
			}
		}
		leaf += plan.leafCount
		plans = append(plans, plan)
	}
	if leaf != pq.NumColumns() {
		return nil
	}
	return plans
}

// Write adds rec's rows to the row group being gathered; a full row group
// goes to the encoding goroutine.
func (p *Parquet) Write(rec arrow.RecordBatch) error {
	if err := p.failure(); err != nil {
		return err
	}
	converted, err := toParquet(rec, p.schema, p.rows)
	if err != nil {
		return err
	}
	defer converted.Release()
	// A slice keeps its whole batch's buffers: each row group holding a
	// slice of this batch counts all of it.
	size := BatchBytes(converted)
	for off := int64(0); off < converted.NumRows(); {
		n := min(converted.NumRows()-off, p.rgRows-p.pendingRows)
		p.pending = append(p.pending, converted.NewSlice(off, off+n))
		p.pendingRows += n
		p.pendingBytes += size
		off += n
		if p.pendingRows == p.rgRows || p.pendingBytes >= p.opts.rowGroupBytes() {
			if err := p.flushRowGroup(); err != nil {
				return err
			}
		}
	}
	p.rows += rec.NumRows()
	return nil
}

// Rows answers how many rows were written.
func (p *Parquet) Rows() int64 { return p.rows }

// flushRowGroup hands the gathered row group on.
func (p *Parquet) flushRowGroup() error {
	group := p.pending
	p.pending, p.pendingRows, p.pendingBytes = nil, 0, 0
	if p.serial == nil && p.fw == nil {
		if err := p.open(group); err != nil {
			release(group)
			return err
		}
	}
	if p.serial != nil {
		defer release(group)
		for _, b := range group {
			if err := p.serial.WriteBuffered(b); err != nil {
				return fmt.Errorf("parquet: %w", err)
			}
		}
		return nil
	}
	if len(group) == 0 {
		return nil
	}
	p.mu.Lock()
	p.sent++
	p.mu.Unlock()
	select {
	case p.work <- group:
		return nil
	case <-p.done:
		release(group)
		return p.failure()
	}
}

func release(group []arrow.RecordBatch) {
	for _, b := range group {
		b.Release()
	}
}

func (p *Parquet) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *Parquet) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

// open chooses the encodings from the first row group and starts the file.
func (p *Parquet) open(first []arrow.RecordBatch) error {
	opts := append(p.opts.baseProperties(), columnProperties(p.schema, first, p.opts)...)
	props := parquet.NewWriterProperties(opts...)
	if p.plans == nil {
		fw, err := pqarrow.NewFileWriter(p.schema, p.w, props, p.arrowProps)
		if err != nil {
			return fmt.Errorf("parquet writer: %w", err)
		}
		p.serial = fw
		return nil
	}
	pq, err := parquetSchema(p.schema, props)
	if err != nil {
		return fmt.Errorf("parquet writer: %w", err)
	}
	meta, err := fileMetadata(p.schema)
	if err != nil {
		return err
	}
	fw, err := file.NewParquetWriterWithError(p.w, pq.Root(), file.WithWriterProps(props), file.WithWriteMetadata(meta))
	if err != nil {
		return fmt.Errorf("parquet writer: %w", err)
	}
	p.fw = fw
	p.work, p.done = make(chan []arrow.RecordBatch), make(chan struct{})
	go p.encodeLoop()
	return nil
}

// fileMetadata answers the key-value metadata pqarrow's FileWriter writes:
// the schema's own, then the Arrow schema itself (with list elements named
// as Parquet names them), so that readers get back the types written.
func fileMetadata(s *arrow.Schema) (metadata.KeyValueMetadata, error) {
	meta := make(metadata.KeyValueMetadata, 0)
	md := s.Metadata()
	for i := range md.Len() {
		if err := meta.Append(md.Keys()[i], md.Values()[i]); err != nil {
			return nil, err
		}
	}
	fields := make([]arrow.Field, s.NumFields())
	for i, f := range s.Fields() {
		fields[i] = elementNames(f)
	}
	stored := arrow.NewSchema(fields, &md)
	if err := meta.Append("ARROW:schema", base64.StdEncoding.EncodeToString(flight.SerializeSchema(stored, memory.DefaultAllocator))); err != nil {
		return nil, err
	}
	return meta, nil
}

// elementNames names list elements "element", as the Parquet groups are.
func elementNames(f arrow.Field) arrow.Field {
	switch t := f.Type.(type) {
	case *arrow.ListType:
		e := elementNames(t.ElemField())
		e.Name = "element"
		f.Type = arrow.ListOfField(e)
	case *arrow.LargeListType:
		e := elementNames(t.ElemField())
		e.Name = "element"
		f.Type = arrow.LargeListOfField(e)
	case *arrow.FixedSizeListType:
		e := elementNames(t.ElemField())
		e.Name = "element"
		f.Type = arrow.FixedSizeListOfField(t.Len(), e)
	case *arrow.StructType:
		fields := make([]arrow.Field, t.NumFields())
		for i := range fields {
			fields[i] = elementNames(t.Field(i))
		}
		f.Type = arrow.StructOf(fields...)
	case *arrow.MapType:
		m := arrow.MapOfFields(elementNames(t.KeyField()), elementNames(t.ItemField()))
		m.KeysSorted = t.KeysSorted
		f.Type = m
	}
	return f
}

// encodeLoop encodes row groups until the work channel closes.
func (p *Parquet) encodeLoop() {
	defer close(p.done)
	for group := range p.work {
		if p.failure() == nil {
			if err := p.encodeRowGroupSafely(group); err != nil {
				p.fail(err)
			}
		}
		release(group)
		p.mu.Lock()
		p.encoded++
		var idle func()
		if p.encoded == p.sent {
			idle, p.onIdle = p.onIdle, nil
		}
		p.mu.Unlock()
		if idle != nil {
			idle()
		}
	}
}

// WhenIdle calls fn once every row group handed to the encoding goroutine
// is encoded and written out (at once when none is in flight; the row
// group being gathered stays): a caller that then leaves the file alone,
// such as a partition file whose upload gives its buffers back, learns when
// nothing writes to it any more, without waiting for the encoding.
func (p *Parquet) WhenIdle(fn func()) {
	p.mu.Lock()
	if p.encoded == p.sent || p.work == nil || p.closed {
		p.mu.Unlock()
		fn()
		return
	}
	p.onIdle = fn
	p.mu.Unlock()
}

// encodeRowGroupSafely answers a panic of the Parquet library as an error:
// this goroutine is ours, and nothing above it would recover.
func (p *Parquet) encodeRowGroupSafely(group []arrow.RecordBatch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parquet: %v", r)
		}
	}()
	return p.encodeRowGroup(group)
}

// encodeRowGroup encodes each top-level column on its own goroutine into a
// buffered row group, then writes the row group out.
func (p *Parquet) encodeRowGroup(group []arrow.RecordBatch) (err error) {
	rgw, err := p.fw.AppendBufferedRowGroupChecked()
	if err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	// A few workers (one per core) take columns costliest first, by what
	// each cost in the last row group: the row group ends with its slowest
	// column, so the long ones must not be left for last.
	order := make([]int, len(p.plans))
	for k := range order {
		order[k] = k
	}
	sort.SliceStable(order, func(a, b int) bool { return p.cost[order[a]] > p.cost[order[b]] })
	errs := make([]error, len(p.plans))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(order)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(order) {
					return
				}
				k := order[i]
				start := time.Now()
				errs[k] = p.encodeColumnSafely(rgw, k, group)
				p.cost[k] = time.Since(start)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	if err := rgw.Close(); err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	return nil
}

// encodeColumnSafely encodes column k, answering a panic as an error.
func (p *Parquet) encodeColumnSafely(rgw file.BufferedRowGroupWriter, k int, group []arrow.RecordBatch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("column %q: %v", p.schema.Field(k).Name, r)
		}
	}()
	if err := p.encodeColumn(rgw, k, p.leafStart[k], p.plans[k], group); err != nil {
		return fmt.Errorf("column %q: %w", p.schema.Field(k).Name, err)
	}
	return nil
}

// encodeColumn writes column k of every batch of a row group to its leaf
// column writers, with a write context of its own (they are not safe to
// share between goroutines).
func (p *Parquet) encodeColumn(rgw file.BufferedRowGroupWriter, k, leaf int, plan *shredPlan, group []arrow.RecordBatch) error {
	ctx := pqarrow.NewArrowWriteContext(context.Background(), &p.arrowProps)
	chunks := make([]arrow.Array, len(group))
	for i, b := range group {
		chunks[i] = b.Column(k)
	}
	if p.schema.Field(k).Type.ID() == arrow.DICTIONARY && len(chunks) > 1 {
		// pqarrow falls back to plain when a chunk's dictionary differs from
		// the last one's (each Arrow batch may bring its own): one
		// dictionary for the row group keeps the column dictionary encoded.
		column := arrow.NewChunked(p.schema.Field(k).Type, chunks)
		unified, err := array.UnifyChunkedDicts(memory.DefaultAllocator, column)
		column.Release()
		if err != nil {
			return err
		}
		defer unified.Release()
		chunks = unified.Chunks()
	}
	written := false
	if t := p.schema.Field(k).Type; plan.root.kind == shredLeaf && buildsDictionary(t) {
		cw, err := rgw.Column(leaf)
		if err != nil {
			return err
		}
		if written, err = writeDictionary(ctx, cw, plan, t, chunks); err != nil {
			return err
		}
	}
	if !written {
		if err := p.writeChunks(rgw, leaf, plan, chunks, ctx); err != nil {
			return err
		}
	}
	// Cut each leaf's last page here, in parallel: the row group's Close,
	// which runs serially, would otherwise encode and compress it.
	// Closing a column after this finds no buffered values and only copies
	// its pages out.
	for j := range plan.leafCount {
		cw, err := rgw.Column(leaf + j)
		if err != nil {
			return err
		}
		if f, ok := cw.(pageFlusher); ok && hasBufferedLevels(cw) {
			if err := f.FlushCurrentPage(); err != nil {
				return err
			}
		}
	}
	return nil
}

// pageFlusher is what arrow-go's column chunk writers promote from their
// shared base, though ColumnChunkWriter does not list it.
type pageFlusher interface {
	FlushCurrentPage() error
}

// hasBufferedLevels reports whether cw holds levels not yet cut into a
// page. FlushCurrentPage with none panics: a dictionary encoder always
// estimates a few bytes, so a column whose last write ended exactly on a
// page (8-byte values fill 1 MiB pages at 128Ki rows) was flushed empty
// and crashed (#22). arrow-go does not export its count of buffered
// levels, but its page statistics count each level written since the
// last page as a value or a null; without them the page is left to the
// row group's Close, which checks the count itself.
func hasBufferedLevels(cw file.ColumnChunkWriter) bool {
	s := cw.PageStatistics()
	return s != nil && s.NumValues()+s.NullCount() > 0
}

func (p *Parquet) writeChunks(rgw file.BufferedRowGroupWriter, leaf int, plan *shredPlan, chunks []arrow.Array, ctx context.Context) error {
	for _, chunk := range chunks {
		leaves, err := plan.shred(chunk)
		if err != nil {
			return err
		}
		for j, l := range leaves {
			cw, err := rgw.Column(leaf + j)
			if err != nil {
				return err
			}
			var values arrow.Array
			if l.arr == nil {
				values = array.MakeArrayOfNull(memory.DefaultAllocator, plan.leafTypes[j], 0)
			} else {
				values = array.NewSlice(l.arr, int64(l.first), int64(l.next))
			}
			err = pqarrow.WriteArrowToColumn(ctx, cw, values, l.def, l.rep, plan.leafNullable[j])
			values.Release()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// Close writes the last row group and the footer. Like pqarrow's writer it
// closes the underlying writer when it is an io.Closer; wrap it to prevent
// that.
func (p *Parquet) Close() error {
	if p.closed {
		return p.failure()
	}
	p.mu.Lock()
	p.onIdle = nil // the file finishes: nothing waits any more
	p.mu.Unlock()
	if p.pendingRows > 0 || (p.serial == nil && p.fw == nil) {
		if err := p.flushRowGroup(); err != nil {
			p.Abort()
			return err
		}
	}
	p.closed = true
	if p.serial != nil {
		if err := p.serial.Close(); err != nil {
			return fmt.Errorf("parquet: %w", err)
		}
		return nil
	}
	close(p.work)
	<-p.done
	if err := p.failure(); err != nil {
		return err
	}
	if err := p.fw.Close(); err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	return nil
}

// Abort stops the encoding goroutine and drops what is buffered, writing
// no footer: for a file that is being discarded.
func (p *Parquet) Abort() {
	if p.closed {
		return
	}
	p.closed = true
	p.fail(errors.New("parquet: writer aborted"))
	release(p.pending)
	p.pending = nil
	if p.work != nil {
		close(p.work)
		<-p.done
	}
}

// BatchBytes answers the bytes of a batch's buffers, whole (a slice's
// too: it keeps them).
func BatchBytes(rec arrow.RecordBatch) int64 {
	var n int64
	for _, col := range rec.Columns() {
		n += dataBytes(col.Data())
	}
	return n
}

func dataBytes(d arrow.ArrayData) int64 {
	var n int64
	for _, b := range d.Buffers() {
		if b != nil {
			n += int64(b.Len())
		}
	}
	for _, c := range d.Children() {
		n += dataBytes(c)
	}
	if d.DataType().ID() == arrow.DICTIONARY {
		n += dataBytes(d.Dictionary())
	}
	return n
}
