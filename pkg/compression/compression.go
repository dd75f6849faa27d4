// Package compression wraps a file's byte stream in the compression a
// destination asks for: GZIP, ZIP, TAR or TGZ. GZIP and ZIP stream; a tar
// header needs the file's size first, so TAR and TGZ spool the file to local
// disk (removed on Close) and write it out at the end.
//
// Extensions are never added here: the filename template names the object.
package compression

import (
	"archive/tar"
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/pgzip"
)

// Kind is a compression around a file.
type Kind int

// The kinds users know.
const (
	None Kind = iota
	Gzip
	Zip
	Tar
	Tgz
)

// Extension answers the file name ending readers expect of a kind: ".gz",
// ".zip", ".tar", ".tgz", or "" for none.
func Extension(k Kind) string {
	return map[Kind]string{Gzip: ".gz", Zip: ".zip", Tar: ".tar", Tgz: ".tgz"}[k]
}

// Options say how to wrap.
type Options struct {
	// Name is the file's name inside ZIP and TAR archives.
	Name string
	// Modified is the file's time inside archives; now when zero.
	Modified time.Time
	// SpoolDir holds TAR and TGZ spools; the system temporary directory
	// when empty. Spool, when set, is used instead.
	SpoolDir string
	// Spool holds TAR and TGZ spools where they are counted and capped.
	Spool *Spool
	// Concurrency is how many gzip blocks compress at once; GOMAXPROCS
	// when zero. Each holds a block of 1 MiB.
	Concurrency int
	// Zip64 writes a ZIP in Zip64 form from its first header, for readers
	// that need to know up front; without it Zip64 records appear only
	// when the sizes need them.
	Zip64 bool
}

// New answers a writer that compresses into w. Closing it finishes the
// stream (trailer, central directory, or the spooled tar entry) but does
// not close w.
func New(w io.Writer, kind Kind, o Options) (io.WriteCloser, error) {
	if o.Modified.IsZero() {
		o.Modified = time.Now()
	}
	if (kind == Zip || kind == Tar || kind == Tgz) && o.Name == "" {
		return nil, errors.New("an archive entry needs a name")
	}
	switch kind {
	case None:
		return nopCloser{w}, nil
	case Gzip:
		return newGzip(w, o)
	case Zip:
		if o.Zip64 {
			return newZip64(w, o)
		}
		return newZip(w, o)
	case Tar:
		return newTar(w, nil, o)
	case Tgz:
		gz, err := newGzip(w, o)
		if err != nil {
			return nil, err
		}
		return newTar(gz, gz, o)
	}
	return nil, fmt.Errorf("unknown compression %d", kind)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// newGzip compresses 1 MiB blocks on several cores (klauspost/pgzip): a
// single-threaded gzip is the bottleneck of every compressed delimited
// output.
func newGzip(w io.Writer, o Options) (*pgzip.Writer, error) {
	gz, err := pgzip.NewWriterLevel(w, pgzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	n := o.Concurrency
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if err := gz.SetConcurrency(1<<20, n); err != nil {
		return nil, err
	}
	gz.ModTime = o.Modified
	return gz, nil
}

// zipWriter streams one deflated entry. archive/zip writes a data
// descriptor after it, and Zip64 records whenever the entry's sizes or the
// archive need them.
type zipWriter struct {
	zw    *zip.Writer
	entry io.Writer
}

func newZip(w io.Writer, o Options) (*zipWriter, error) {
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(out, flate.DefaultCompression)
	})
	entry, err := zw.CreateHeader(&zip.FileHeader{Name: o.Name, Method: zip.Deflate, Modified: o.Modified})
	if err != nil {
		return nil, fmt.Errorf("zip entry: %w", err)
	}
	return &zipWriter{zw: zw, entry: entry}, nil
}

func (z *zipWriter) Write(p []byte) (int, error) { return z.entry.Write(p) }

func (z *zipWriter) Close() error { return z.zw.Close() }

// tarWriter spools the file, then writes one tar entry with its size.
type tarWriter struct {
	out   io.Writer
	after io.Closer // the gzip around the tar, for TGZ
	spool *os.File
	o     Options
	size  int64
}

func newTar(out io.Writer, after io.Closer, o Options) (*tarWriter, error) {
	dir := o.SpoolDir
	if o.Spool != nil {
		dir = o.Spool.dir
	}
	f, err := os.CreateTemp(dir, spoolPrefix)
	if err != nil {
		return nil, fmt.Errorf("tar spool: %w", err)
	}
	return &tarWriter{out: out, after: after, spool: f, o: o}, nil
}

func (t *tarWriter) Write(p []byte) (int, error) {
	if s := t.o.Spool; s != nil {
		if !s.take(int64(len(p))) {
			return 0, fmt.Errorf("%w: %d bytes in %s", ErrSpoolFull, s.max, s.dir)
		}
	}
	n, err := t.spool.Write(p)
	if s := t.o.Spool; s != nil && n < len(p) {
		s.give(int64(len(p) - n))
	}
	t.size += int64(n)
	return n, err
}

func (t *tarWriter) Close() (err error) {
	defer t.drop()
	if _, err := t.spool.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("tar spool: %w", err)
	}
	tw := tar.NewWriter(t.out)
	hdr := &tar.Header{Name: t.o.Name, Mode: 0o644, Size: t.size, ModTime: t.o.Modified, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("tar header: %w", err)
	}
	if _, err := io.Copy(tw, t.spool); err != nil {
		return fmt.Errorf("tar entry: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	if t.after != nil {
		return t.after.Close()
	}
	return nil
}

// drop removes the spool and gives back what it counted; for a writer
// closed or abandoned.
func (t *tarWriter) drop() {
	if t.spool == nil {
		return
	}
	name := t.spool.Name()
	t.spool.Close()
	_ = os.Remove(name)
	t.spool = nil
	if t.o.Spool != nil {
		t.o.Spool.give(t.size)
	}
}

// Abort removes the spool without writing: for a file being discarded.
func (t *tarWriter) Abort() { t.drop() }

// SpoolSize answers how many bytes a TAR or TGZ writer holds on disk.
func (t *tarWriter) SpoolSize() int64 { return t.size }

// spoolPrefix starts every spool file's name.
const spoolPrefix = "sluice-tar-spool-"

// ErrSpoolFull is a spool that reached its cap.
var ErrSpoolFull = errors.New("the TAR spool is full")

// Spool is a directory of TAR and TGZ spools (plaintext rows, on local
// disk until the archive's header can say their size): kept under the
// service's data directory, counted against a cap, and emptied of what a
// killed process left when it is opened (#22: spools in the system
// temporary directory outlived a SIGKILL, uncounted).
type Spool struct {
	dir  string
	max  int64 // 0: no cap
	used atomic.Int64
}

// OpenSpool answers the spool in dir (created 0700), removing the spool
// files a process that stopped left there.
func OpenSpool(dir string, max int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tar spool: %w", err)
	}
	left, err := filepath.Glob(filepath.Join(dir, spoolPrefix+"*"))
	if err != nil {
		return nil, err
	}
	for _, f := range left {
		if err := os.Remove(f); err != nil {
			return nil, fmt.Errorf("tar spool: remove %s: %w", f, err)
		}
	}
	return &Spool{dir: dir, max: max}, nil
}

// Used answers the bytes spooled now.
func (s *Spool) Used() int64 { return s.used.Load() }

func (s *Spool) take(n int64) bool {
	if s.used.Add(n) > s.max && s.max > 0 {
		s.used.Add(-n)
		return false
	}
	return true
}

func (s *Spool) give(n int64) { s.used.Add(-n) }
