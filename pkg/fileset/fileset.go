// Package fileset turns a stream of Arrow record batches into the set of
// files a destination asks for: one format, compression and optional PGP
// encryption per file, names from the filename template, and a new file
// whenever the current one reaches the row or byte limit. Each file streams
// into its own object of a Sink (an S3 multipart upload, a local file), so
// memory stays bounded by a batch whatever the size of the output.
package fileset

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/compression"
	"github.com/sluicehq/sluice/pkg/filename"
	"github.com/sluicehq/sluice/pkg/partition"
	"github.com/sluicehq/sluice/pkg/pgpstream"
)

// Format is a file format.
type Format int

// The formats.
const (
	Parquet Format = iota
	Delimited
	JSON
	NDJSON
)

// Config says how files are made and named.
type Config struct {
	Format    Format
	Delimited arrowfmt.DelimitedOptions
	JSON      arrowfmt.JSONOptions
	Parquet   arrowfmt.ParquetOptions
	// Compression wraps each file; archives name their entry after the
	// object key's last segment.
	Compression compression.Kind
	// Zip64 writes ZIP files in Zip64 form from their first header.
	Zip64 bool
	// Spool, when set, holds TAR and TGZ spools (counted and capped);
	// otherwise they go to the system temporary directory.
	Spool *compression.Spool
	// PGP, when set, encrypts each file (after compression: encrypted bytes
	// do not compress).
	PGP *pgpstream.Recipient
	// Template names each file; it must use {{file_number}} when files can
	// be split. Prefix goes before every key.
	Template *filename.Template
	// ParquetExtension ends Parquet file names in .parquet when the
	// template does not already.
	ParquetExtension bool
	Prefix           string
	// Values fill the template; FileNumber is set per file.
	Values filename.Values
	// MaxRows cuts a new file after this many rows; 0 means no limit.
	MaxRows int64
	// MaxBytes cuts a new file once the format has written this many bytes
	// (before compression); 0 means no limit. A text file passes it by at
	// most one row; a Parquet file by at most two row groups (one is encoded
	// while the next is gathered).
	MaxBytes int64
	// Concurrency is how many files of an output split by rows are encoded
	// at once, each on its own goroutine, so that Parquet part files use
	// every core; GOMAXPROCS when zero. Outputs split by bytes, or not
	// split, are encoded in the caller's goroutine.
	Concurrency int
	// Partition, when set, writes each partition's rows into its own
	// folder, `{Prefix}{col}={value}/.../`, each with its own numbered files
	// (see Partitioned).
	Partition *partition.Spec
	// MaxOpenFiles is the most partition files open at once
	// (DefaultMaxOpenFiles when zero).
	MaxOpenFiles int
	// PartitionBuffer is the most bytes of Arrow data held while rows are
	// gathered by partition (DefaultPartitionBuffer when zero).
	PartitionBuffer int64

	// firstFile is the number before a Writer's first file: a partition's
	// next file continues its numbering.
	firstFile int
}

// DefaultTemplate names files when a destination gives no template: a
// folder of numbered part files for Parquet, numbered files with the
// format's extension otherwise, then the compression's (`.csv.gz`), as
// every tool that reads them expects (DuckDB sniffs a gzipped file named
// `.csv` as text, #22). A template of the user's says the whole name.
func DefaultTemplate(f Format, delimiter rune, kind compression.Kind) string {
	base := "{{output_name}}_{{file_number|pad:5}}"
	switch f {
	case Parquet:
		// Parquet compresses inside the file.
		return "{{output_name}}/part-{{file_number|pad:5}}"
	case JSON:
		return base + ".json" + compression.Extension(kind)
	case NDJSON:
		return base + ".ndjson" + compression.Extension(kind)
	}
	ext := ".txt"
	switch delimiter {
	case 0, ',':
		ext = ".csv"
	case '\t':
		ext = ".tsv"
	case '|':
		ext = ".psv"
	}
	return base + ext + compression.Extension(kind)
}

// SuccessKey and ManifestKey name the objects written after the last data
// file: an empty `.DONE` marker, and a manifest of every file.
func SuccessKey(prefix, outputName string) string { return prefix + outputName + ".DONE" }

// ManifestKey names the manifest object of an output.
func ManifestKey(prefix, outputName string) string { return prefix + outputName + ".manifest.json" }

// Key answers the object key of file n.
func (c Config) Key(n int) string {
	values := c.Values
	values.FileNumber = n
	key := c.Prefix + c.Template.Render(values)
	if c.Format == Parquet && c.ParquetExtension && !strings.HasSuffix(key, ".parquet") {
		key += ".parquet"
	}
	return key
}

// Sink creates the objects files are written to.
type Sink interface {
	Create(key string) (Object, error)
}

// Object is one file being written: Close keeps it, Abort discards it (an
// S3 multipart upload is aborted, a local file removed).
type Object interface {
	io.WriteCloser
	Abort() error
}

// File is one file written.
type File struct {
	Key string
	// Partition is the partition a file of a partitioned output holds.
	Partition []partition.Value
	// Rows in the file.
	Rows int64
	// Bytes written to the sink: after compression and encryption.
	Bytes int64
}

// chunkRows bounds the rows written at once when a file is cut by size and
// the format cannot say its size row by row (Parquet, by row group).
const chunkRows = 4096

// flusher is a format that can push its buffered bytes out, so that a split
// by size counts every row written.
type flusher interface{ Flush() error }

// Writer writes a stream of batches as files.
type Writer struct {
	cfg     Config
	schema  *arrow.Schema
	sink    Sink
	done    []File
	cur     *open
	async   bool
	pending []*open // finished by the producer, still encoding, in order
	err     error   // the first failure of an encoding goroutine
	keys    map[string]bool
}

// open is the file being written, with its layers.
type open struct {
	file   File
	format batchWriter
	raw    counter // bytes the format wrote
	out    *countingCloser
	layers []io.Closer // compression, pgp, sink: closed in this order
	// For files encoded on their own goroutine: batches in, one result out.
	ch     chan arrow.RecordBatch
	result chan error
}

type batchWriter interface {
	Write(arrow.RecordBatch) error
	Close() error
}

// counter counts what the format writes. Atomic: the Parquet writer
// writes from its encoding goroutine while Write reads the count to cut by
// size.
type counter struct {
	w io.Writer
	n atomic.Int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// aborter is a format with work of its own to stop when its file is
// discarded (the Parquet writer's encoding goroutine).
type aborter interface{ Abort() }

type countingCloser struct {
	Object
	n int64
}

func (c *countingCloser) Write(p []byte) (int, error) {
	n, err := c.Object.Write(p)
	c.n += int64(n)
	return n, err
}

// Files is a writer of an output's files: unpartitioned (Writer) or
// partitioned (Partitioned).
type Files interface {
	// Write adds a batch's rows.
	Write(arrow.RecordBatch) error
	// Close finishes every file and answers them all.
	Close() ([]File, error)
	// Abort discards the files being written; finished ones stay.
	Abort()
}

// Open answers the writer cfg asks for: partitioned when cfg.Partition is
// set. It checks the schema against the format, and the partition fields
// against the schema, before anything is created.
func Open(schema *arrow.Schema, cfg Config, sink Sink) (Files, error) {
	var w Files
	var err error
	if cfg.Partition != nil {
		w, err = NewPartitioned(schema, cfg, sink)
	} else {
		w, err = New(schema, cfg, sink)
	}
	if err != nil {
		return nil, err // not a typed nil the caller would Abort
	}
	return w, nil
}

// New checks the schema against the format before anything is created.
func New(schema *arrow.Schema, cfg Config, sink Sink) (*Writer, error) {
	if cfg.Template == nil {
		return nil, errors.New("fileset: a filename template is required")
	}
	if (cfg.MaxRows > 0 || cfg.MaxBytes > 0) && !cfg.Template.UsesFileNumber() {
		return nil, errors.New("fileset: a split output needs {{file_number}} in the filename template")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = runtime.GOMAXPROCS(0)
	}
	w := &Writer{cfg: cfg, schema: schema, sink: sink}
	w.async = cfg.MaxRows > 0 && cfg.MaxBytes == 0 && cfg.Concurrency > 1
	// Building a format writer on a discarded stream checks the schema.
	if _, err := w.format(io.Discard); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) format(out io.Writer) (batchWriter, error) {
	switch w.cfg.Format {
	case Parquet:
		if err := arrowfmt.CheckParquet(w.schema, w.cfg.Parquet); err != nil {
			return nil, err
		}
		return arrowfmt.NewParquet(nopCloser{out}, w.schema, w.cfg.Parquet)
	case Delimited:
		return arrowfmt.NewDelimited(out, w.schema, w.cfg.Delimited)
	case JSON, NDJSON:
		o := w.cfg.JSON
		o.Lines = w.cfg.Format == NDJSON
		return arrowfmt.NewJSON(out, w.schema, o)
	}
	return nil, fmt.Errorf("unknown format %d", w.cfg.Format)
}

// nopCloser keeps pqarrow from closing the layer below when it closes.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func (w *Writer) openFile() error {
	n := w.cfg.firstFile + len(w.keys) + 1
	key := w.cfg.Key(n)
	if w.keys[key] {
		return fmt.Errorf("fileset: file %d would be named %q like an earlier one", n, key)
	}
	if w.keys == nil {
		w.keys = map[string]bool{}
	}
	w.keys[key] = true
	obj, err := w.sink.Create(key)
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	o := &open{file: File{Key: key}, out: &countingCloser{Object: obj}}
	var dst io.Writer = o.out
	var layers []io.Closer
	if w.cfg.PGP != nil {
		enc, err := w.cfg.PGP.Encrypt(dst, base(key))
		if err != nil {
			_ = obj.Abort()
			return err
		}
		dst = enc
		layers = append(layers, enc)
	}
	comp, err := compression.New(dst, w.cfg.Compression, compression.Options{Name: base(key), Modified: w.cfg.Values.Now, Zip64: w.cfg.Zip64, Spool: w.cfg.Spool})
	if err != nil {
		_ = obj.Abort()
		return err
	}
	// Closed innermost first: compression, then encryption, then the object.
	o.layers = append([]io.Closer{comp}, reverse(layers)...)
	o.layers = append(o.layers, o.out)
	o.raw.w = comp
	if o.format, err = w.format(&o.raw); err != nil {
		_ = obj.Abort()
		return err
	}
	w.cur = o
	if w.async {
		o.ch, o.result = make(chan arrow.RecordBatch, 2), make(chan error, 1)
		go o.encode()
	}
	return nil
}

// encode writes the batches sent to the file, then finishes it.
func (o *open) encode() {
	var err error
	for rec := range o.ch {
		if err == nil {
			err = o.format.Write(rec)
		}
		rec.Release()
	}
	if err == nil {
		err = o.finish()
	} else {
		o.abort()
	}
	o.result <- err
}

// abort stops the format and discards the object.
func (o *open) abort() {
	if a, ok := o.format.(aborter); ok {
		a.Abort()
	}
	for _, l := range o.layers { // a TAR spool goes with its file
		if a, ok := l.(aborter); ok {
			a.Abort()
		}
	}
	_ = o.out.Abort()
}

// finish closes the format and the layers, keeping the object.
func (o *open) finish() error {
	fail := func(err error) error {
		for _, l := range o.layers {
			if a, ok := l.(aborter); ok {
				a.Abort()
			}
		}
		_ = o.out.Abort()
		return fmt.Errorf("%s: %w", o.file.Key, err)
	}
	if err := o.format.Close(); err != nil {
		return fail(err)
	}
	for _, c := range o.layers[:len(o.layers)-1] {
		if err := c.Close(); err != nil {
			return fail(err)
		}
	}
	if err := o.out.Close(); err != nil {
		return fmt.Errorf("%s: %w", o.file.Key, err)
	}
	o.file.Bytes = o.out.n
	return nil
}

func reverse(c []io.Closer) []io.Closer {
	out := make([]io.Closer, len(c))
	for i := range c {
		out[len(c)-1-i] = c[i]
	}
	return out
}

func base(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '/' {
			return key[i+1:]
		}
	}
	return key
}

func (w *Writer) closeFile() error {
	o := w.cur
	w.cur = nil
	if !w.async {
		if err := o.finish(); err != nil {
			return err
		}
		w.done = append(w.done, o.file)
		return nil
	}
	close(o.ch)
	w.pending = append(w.pending, o)
	// At most Concurrency files encode at once: wait for the oldest.
	for len(w.pending) >= w.cfg.Concurrency {
		if err := w.collect(); err != nil {
			return err
		}
	}
	return nil
}

// collect waits for the oldest pending file.
func (w *Writer) collect() error {
	o := w.pending[0]
	w.pending = w.pending[1:]
	if err := <-o.result; err != nil {
		if w.err == nil {
			w.err = err
		}
		return w.err
	}
	w.done = append(w.done, o.file)
	return nil
}

// sizedChunk answers how many rows to write next into a file cut by size:
// about what fits in the bytes left, at the bytes per row measured so far,
// so that a file passes MaxBytes by at most a row (or, for formats that
// write whole row groups, a row group) whatever the row width.
func (w *Writer) sizedChunk() int64 {
	o := w.cur
	if _, ok := o.format.(flusher); !ok {
		return chunkRows
	}
	written := o.raw.n.Load()
	if o.file.Rows == 0 || written == 0 {
		return 16 // measure a few rows first
	}
	// Half of what seems to fit: rows vary in width, and halving lands the
	// last row within one row of the limit in a few more writes.
	perRow := max(1, written/o.file.Rows)
	return max(1, min(chunkRows, (w.cfg.MaxBytes-written)/perRow/2))
}

// full reports whether the current file reached a limit.
func (w *Writer) full() bool {
	o := w.cur
	return (w.cfg.MaxRows > 0 && o.file.Rows >= w.cfg.MaxRows) || (w.cfg.MaxBytes > 0 && o.raw.n.Load() >= w.cfg.MaxBytes)
}

// Write adds rec's rows, cutting files at the limits.
func (w *Writer) Write(rec arrow.RecordBatch) error {
	for off := int64(0); off < rec.NumRows(); {
		if w.cur != nil && w.full() {
			if err := w.closeFile(); err != nil {
				return err
			}
		}
		if w.cur == nil {
			if err := w.openFile(); err != nil {
				return err
			}
		}
		n := rec.NumRows() - off
		if w.cfg.MaxRows > 0 {
			n = min(n, w.cfg.MaxRows-w.cur.file.Rows)
		}
		if w.cfg.MaxBytes > 0 {
			n = min(n, w.sizedChunk())
		}
		part := rec
		if off != 0 || n != rec.NumRows() {
			part = rec.NewSlice(off, off+n)
		} else if w.async {
			rec.Retain() // the encoding goroutine releases it
		}
		var err error
		if w.async {
			w.cur.ch <- part
		} else {
			err = w.cur.format.Write(part)
			if f, ok := w.cur.format.(flusher); ok && err == nil && w.cfg.MaxBytes > 0 {
				err = f.Flush()
			}
			if part != rec {
				part.Release()
			}
		}
		if err != nil {
			key := w.cur.file.Key
			w.Abort()
			return fmt.Errorf("%s: %w", key, err)
		}
		w.cur.file.Rows += n
		off += n
	}
	return nil
}

// idler is an object that can give back what it holds of shared
// resources while no bytes come (an S3 upload's part buffers).
type idler interface{ Idle() }

// whenIdler is a format that writes on a goroutine of its own (Parquet's
// encoding) and says when it is done with what it was given.
type whenIdler interface{ WhenIdle(func()) }

// Idle lets the current file's object give back shared buffers: the file
// stays open, waiting for more rows, holding only its own bytes (and, for
// Parquet, the row group it gathers, bounded by its RowGroupBytes). A
// format that writes on its own goroutine lets the object go idle once it
// is done writing, without the caller waiting: an idle file that kept part
// buffers could leave the file being written waiting for them forever.
func (w *Writer) Idle() {
	if w.cur == nil || w.async {
		return
	}
	i, ok := w.cur.out.Object.(idler)
	if !ok {
		return
	}
	if wi, ok := w.cur.format.(whenIdler); ok {
		wi.WhenIdle(i.Idle)
		return
	}
	i.Idle()
}

// Abort discards the file being written. Files already finished stay: the
// caller decides what a failed delivery leaves behind.
func (w *Writer) Abort() {
	if w.cur != nil {
		if w.async {
			close(w.cur.ch)
			<-w.cur.result
		}
		w.cur.abort()
		w.cur = nil
	}
	for _, o := range w.pending {
		<-o.result
	}
	w.pending = nil
}

// Close finishes the last file (or writes one empty file when no row came)
// and answers every file written, in order.
func (w *Writer) Close() ([]File, error) {
	if w.cur == nil && len(w.done) == 0 {
		if err := w.openFile(); err != nil {
			return nil, err
		}
	}
	if w.cur != nil {
		if err := w.closeFile(); err != nil {
			w.Abort()
			return nil, err
		}
	}
	for len(w.pending) > 0 {
		if err := w.collect(); err != nil {
			w.Abort()
			return nil, err
		}
	}
	return w.done, nil
}
