package fileset

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/partition"
)

// DefaultMaxOpenFiles is the most partition files open at once when the
// config does not say.
const DefaultMaxOpenFiles = 16

// DefaultPartitionBuffer is the Arrow data gathered by partition before the
// partitions holding the oldest of it are written, when the config does
// not say.
const DefaultPartitionBuffer = 128 << 20

// maxKeyBytes is S3's limit on an object key.
const maxKeyBytes = 1024

// MaxFinishing is how many evicted partition files are finished (their last
// part uploaded) at once, beside the writing: small files spend most of
// their time waiting for S3 to answer.
const MaxFinishing = 16

// Partitioned writes each partition's rows into files of its own folder.
//
// Memory stays bounded whatever the number of partitions and the order of
// the rows: batches are regrouped by partition and held, up to
// PartitionBuffer bytes; past that, the partitions holding rows of the
// oldest batch are written to their files until half the buffer is free
// (so that a partition's rows go out in large runs, and clustered input
// writes each partition once). At most MaxOpenFiles files are open: a
// partition that needs one when that many are open finishes the least
// recently written, whose partition starts its next file when more of its
// rows come. An open file that waits holds only its own bytes (its format
// writes out what it gathered and its upload gives back its part buffers),
// so that open files never hold the shared part-buffer pool.
//
// Everything it decides depends only on the rows, so a rerun of the same
// input writes the same keys and bytes.
type Partitioned struct {
	cfg  Config
	sink Sink
	p    *partition.Partitioner
	mem  memory.Allocator

	rows     int64 // rows written so far
	parts    []*partState
	groups   list.List // of *group, oldest first
	buffered int64
	open     list.List // of *partState with a file open, least recently written first

	// Finishing evicted files runs beside the writing.
	finishing sync.WaitGroup
	slots     chan struct{}
	mu        sync.Mutex
	done      []File
	err       error
}

// group is one regrouped batch and the partitions still holding its rows.
type group struct {
	rec   arrow.RecordBatch
	bytes int64
	pins  int
	elem  *list.Element
}

// pending is a run of one partition's rows in a group.
type pending struct {
	g         *group
	off, rows int64
}

type partState struct {
	info    *partition.Partition
	cfg     Config
	w       *Writer
	elem    *list.Element // in open
	files   int           // files finished or being finished
	pending []pending
}

// NewPartitioned checks the partition fields against the schema and the
// files' schema against the format.
func NewPartitioned(schema *arrow.Schema, cfg Config, sink Sink) (*Partitioned, error) {
	if cfg.Template == nil || !cfg.Template.UsesFileNumber() {
		return nil, errors.New("fileset: a partitioned output needs {{file_number}} in the filename template")
	}
	p, err := partition.New(schema, *cfg.Partition, memory.DefaultAllocator)
	if err != nil {
		return nil, err
	}
	if cfg.MaxOpenFiles <= 0 {
		cfg.MaxOpenFiles = DefaultMaxOpenFiles
	}
	if cfg.PartitionBuffer <= 0 {
		cfg.PartitionBuffer = DefaultPartitionBuffer
	}
	// Files of one partition are written one after the other.
	cfg.Concurrency = 1
	// An open Parquet file gathers its row group until it is full or the
	// file finishes: open files together hold at most the buffer's size.
	if rg := cfg.PartitionBuffer / int64(cfg.MaxOpenFiles); cfg.Parquet.RowGroupBytes == 0 || cfg.Parquet.RowGroupBytes > rg {
		cfg.Parquet.RowGroupBytes = rg
	}
	// A format writer on a discarded stream checks the files' schema.
	check := &Writer{cfg: cfg, schema: p.Schema()}
	if _, err := check.format(discard{}); err != nil {
		return nil, err
	}
	return &Partitioned{cfg: cfg, sink: sink, p: p, mem: memory.DefaultAllocator, slots: make(chan struct{}, MaxFinishing)}, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Write regroups rec's rows by partition and holds them, writing out the
// partitions of the oldest rows held once the buffer is full.
func (w *Partitioned) Write(rec arrow.RecordBatch) error {
	if err := w.failure(); err != nil {
		return err
	}
	if rec.NumRows() == 0 {
		return nil
	}
	g, err := w.p.Split(context.Background(), rec)
	if err != nil {
		return err
	}
	if w.cfg.Format == Parquet && w.cfg.Parquet.Dictionaries == nil && w.cfg.Parquet.Dictionary == arrowfmt.DictionaryAuto {
		// One choice of encodings, from the first whole batch, for every
		// partition's files: a partition's first rows are too few to
		// sample, and sampling for each of thousands of files costs more
		// than encoding them.
		w.cfg.Parquet.Dictionaries = arrowfmt.ChooseDictionaries(g.Batch.Schema(), []arrow.RecordBatch{g.Batch})
	}
	for w.p.Count() > len(w.parts) {
		i := len(w.parts)
		info := w.p.Partition(i)
		cfg := w.cfg
		cfg.Prefix += info.Path
		cfg.Partition = nil
		if k := cfg.Key(1); len(k) > maxKeyBytes {
			g.Batch.Release()
			return &arrowfmt.ValueError{Column: w.cfg.Partition.Fields[0].Column, Row: w.rows,
				Reason: fmt.Sprintf("a row in the batch starting at this row has partition values that make the key %.80q... %d bytes long, over S3's %d", k, len(k), maxKeyBytes)}
		}
		w.parts = append(w.parts, &partState{info: info, cfg: cfg})
	}
	w.rows += rec.NumRows()
	held := &group{rec: g.Batch, bytes: arrowfmt.BatchBytes(g.Batch), pins: len(g.Slices)}
	held.elem = w.groups.PushBack(held)
	w.buffered += held.bytes
	for _, s := range g.Slices {
		pt := w.parts[s.Partition]
		pt.pending = append(pt.pending, pending{g: held, off: s.Offset, rows: s.Rows})
	}
	if w.buffered > w.cfg.PartitionBuffer {
		for w.buffered > w.cfg.PartitionBuffer/2 && w.groups.Len() > 0 {
			oldest := w.groups.Front().Value.(*group)
			// The partitions with rows in the oldest batch (their first
			// held run is in it), in partition order: writing them all
			// releases it.
			var holding []*partState
			for _, pt := range w.parts {
				if len(pt.pending) > 0 && pt.pending[0].g == oldest {
					holding = append(holding, pt)
				}
			}
			if len(holding) == 0 {
				return errors.New("fileset: a held batch has no partition") // cannot happen: pins count them
			}
			for _, pt := range holding {
				if err := w.flush(pt); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// flush writes a partition's held rows to its file.
func (w *Partitioned) flush(pt *partState) error {
	if len(pt.pending) == 0 {
		return nil
	}
	if pt.w == nil {
		if err := w.openPart(pt); err != nil {
			return err
		}
	} else {
		w.open.MoveToBack(pt.elem)
	}
	runs := pt.pending
	pt.pending = nil
	defer func() {
		for _, r := range runs {
			w.unpin(r.g)
		}
	}()
	if w.cfg.Format == Parquet && len(runs) > 1 {
		// The Parquet writer holds a row group's batches whole until it
		// encodes them: one compact batch rather than slices of many.
		rec, err := concat(runs, w.mem)
		if err != nil {
			return err
		}
		err = pt.w.Write(rec)
		rec.Release()
		if err != nil {
			return err
		}
	} else {
		for _, r := range runs {
			s := r.g.rec.NewSlice(r.off, r.off+r.rows)
			err := pt.w.Write(s)
			s.Release()
			if err != nil {
				return err
			}
		}
	}
	pt.w.Idle()
	return nil
}

// unpin releases a group once no partition holds its rows.
func (w *Partitioned) unpin(g *group) {
	if g.pins--; g.pins == 0 {
		w.groups.Remove(g.elem)
		w.buffered -= g.bytes
		g.rec.Release()
	}
}

// openPart opens a partition's next file, finishing the least recently
// written one when too many are open.
func (w *Partitioned) openPart(pt *partState) error {
	if w.open.Len() >= w.cfg.MaxOpenFiles {
		w.finish(w.open.Front().Value.(*partState))
	}
	pt.cfg.firstFile = pt.files
	fw, err := New(w.p.Schema(), pt.cfg, w.sink)
	if err != nil {
		return err
	}
	pt.w = fw
	pt.elem = w.open.PushBack(pt)
	return nil
}

// finish closes a partition's open file beside the writing: its last part
// goes up while other partitions are written.
func (w *Partitioned) finish(pt *partState) {
	fw := pt.w
	w.open.Remove(pt.elem)
	pt.w, pt.elem = nil, nil
	pt.files += len(fw.keys)
	w.slots <- struct{}{}
	w.finishing.Go(func() {
		defer func() { <-w.slots }()
		files, err := fw.Close()
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			if w.err == nil {
				w.err = err
			}
			return
		}
		for _, f := range files {
			f.Partition = pt.info.Values
			w.done = append(w.done, f)
		}
	})
}

func (w *Partitioned) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close writes every partition's held rows, finishes every file and
// answers them all, ordered by key. No rows, no files.
func (w *Partitioned) Close() ([]File, error) {
	for _, pt := range w.parts {
		if err := w.failure(); err != nil {
			w.Abort()
			return nil, err
		}
		if err := w.flush(pt); err != nil {
			w.Abort()
			return nil, err
		}
	}
	for w.open.Len() > 0 {
		w.finish(w.open.Front().Value.(*partState))
	}
	w.finishing.Wait()
	if err := w.failure(); err != nil {
		return nil, err
	}
	slices.SortFunc(w.done, func(a, b File) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return w.done, nil
}

// Abort discards the open files and what is held. Files finished stay.
func (w *Partitioned) Abort() {
	for e := w.open.Front(); e != nil; e = e.Next() {
		pt := e.Value.(*partState)
		pt.w.Abort()
		pt.w, pt.elem = nil, nil
	}
	w.open.Init()
	w.finishing.Wait()
	for e := w.groups.Front(); e != nil; e = e.Next() {
		e.Value.(*group).rec.Release()
	}
	w.groups.Init()
	for _, pt := range w.parts {
		pt.pending = nil
	}
	w.buffered = 0
}

// concat copies runs of one partition into one batch.
func concat(runs []pending, mem memory.Allocator) (arrow.RecordBatch, error) {
	schema := runs[0].g.rec.Schema()
	cols := make([]arrow.Array, schema.NumFields())
	rows := int64(0)
	for _, r := range runs {
		rows += r.rows
	}
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	parts := make([]arrow.Array, len(runs))
	for k := range cols {
		for i, r := range runs {
			parts[i] = array.NewSlice(r.g.rec.Column(k), r.off, r.off+r.rows)
		}
		c, err := array.Concatenate(parts, mem)
		for _, p := range parts {
			p.Release()
		}
		if err != nil {
			return nil, fmt.Errorf("fileset: gather a partition's rows: %w", err)
		}
		cols[k] = c
	}
	return array.NewRecordBatch(schema, cols, rows), nil
}
