package staging

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
)

// Dir stages streams as files in a local directory, one per delivery.
type Dir struct {
	path string
	max  int64
	used atomic.Int64
	// removing counts files moved to the trash and not yet removed.
	removing sync.WaitGroup

	// spares are emptied files of deleted streams, for Create to rename
	// into place (see spare).
	mu     sync.Mutex
	spares []string
	serial int
}

// spare holds the files of deleted small streams, emptied, for new ones:
// as PostgreSQL recycles WAL segments, a rename costs less than a create
// and an unlink. On an ext4 without a journal (this project's test
// machines) every create scans past the inodes deleted in the last
// seconds, which cost 1 ms of CPU per small delivery at 16 at a time.
const spare = ".spare"

// maxSpares bounds the files kept for reuse.
const maxSpares = 64

// trash holds deleted files until they are removed: unlinking a large
// file frees its blocks there and then (16-45 ms for 250 MB on ext4),
// which a delivery's answer waited on. A rename is instant, and whatever
// a stopped process left in the trash goes when the store opens again.
const trash = ".trash"

// trashFrom is the size from which a deleted file goes to the trash: a
// small one (a small delivery's) is unlinked at once, for no more than the
// rename costs, and without a goroutine.
const trashFrom = 8 << 20

const ext = ".stage"

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,127}$`)

// NewDir answers a store in path (created 0700) that refuses new streams
// once its files take max bytes (0: no cap).
func NewDir(path string, max int64) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	d := &Dir{path: path, max: max}
	if err := os.MkdirAll(filepath.Join(path, trash), 0o700); err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	left, err := os.ReadDir(filepath.Join(path, trash))
	if err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	for _, e := range left {
		d.remove(filepath.Join(path, trash, e.Name()))
	}
	// Spares a stopped process left may not have been emptied: removed.
	if err := os.MkdirAll(filepath.Join(path, spare), 0o700); err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	left, err = os.ReadDir(filepath.Join(path, spare))
	if err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	for _, e := range left {
		d.remove(filepath.Join(path, spare, e.Name()))
	}
	err = filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() && (e.Name() == trash || e.Name() == spare) {
			return filepath.SkipDir
		}
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ext) {
			return err
		}
		info, err := e.Info()
		if err == nil {
			d.used.Add(info.Size())
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("staging directory: %w", err)
	}
	return d, nil
}

func (d *Dir) file(id string) (string, error) {
	if !idPattern.MatchString(id) {
		return "", fmt.Errorf("staging: bad stream id %q", id)
	}
	return filepath.Join(d.path, id+ext), nil
}

// Used implements Store.
func (d *Dir) Used() int64 { return d.used.Load() }

// Create implements Store.
func (d *Dir) Create(_ context.Context, id string) (Writer, error) {
	path, err := d.file(id)
	if err != nil {
		return nil, err
	}
	if d.max > 0 && d.used.Load() >= d.max {
		return nil, fmt.Errorf("%w: %d of %d bytes used", ErrFull, d.used.Load(), d.max)
	}
	if err := d.Delete(context.Background(), id); err != nil {
		return nil, err
	}
	if f := d.reuse(path); f != nil {
		return &fileWriter{d: d, f: f}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	return &fileWriter{d: d, f: f}, nil
}

// reuse renames a spare into place and opens it, or answers nil.
func (d *Dir) reuse(path string) *os.File {
	for {
		d.mu.Lock()
		if len(d.spares) == 0 {
			d.mu.Unlock()
			return nil
		}
		from := d.spares[len(d.spares)-1]
		d.spares = d.spares[:len(d.spares)-1]
		d.mu.Unlock()
		if err := os.Rename(from, path); err != nil {
			_ = os.Remove(from)
			continue
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0o600)
		if err == nil {
			return f
		}
		_ = os.Remove(path)
	}
}

// recycle moves a deleted stream's file to the spares, emptied, and
// reports whether it did: false when enough are kept.
func (d *Dir) recycle(path, id string) bool {
	d.mu.Lock()
	if len(d.spares) >= maxSpares {
		d.mu.Unlock()
		return false
	}
	d.serial++
	to := filepath.Join(d.path, spare, fmt.Sprintf("%s-%d", id, d.serial))
	d.mu.Unlock()
	// Renamed before it is emptied: a stream is never found cut short.
	if err := os.Rename(path, to); err != nil {
		return false
	}
	if err := os.Truncate(to, 0); err != nil {
		_ = os.Remove(to)
		return true
	}
	d.mu.Lock()
	d.spares = append(d.spares, to)
	d.mu.Unlock()
	return true
}

// Append implements Store: the file is cut back to its last whole chunk.
func (d *Dir) Append(_ context.Context, id string) (Writer, int64, error) {
	path, err := d.file(id)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("staging: %w", err)
	}
	fileBytes, input, err := walk(f)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	info, err := f.Stat()
	if err == nil && info.Size() != fileBytes {
		d.used.Add(fileBytes - info.Size())
		err = f.Truncate(fileBytes)
	}
	if err == nil {
		_, err = f.Seek(fileBytes, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("staging: %w", err)
	}
	return &fileWriter{d: d, f: f, staged: input}, input, nil
}

// walk follows the chunk headers of f and answers the bytes of whole
// chunks and the input they hold.
func walk(f *os.File) (fileBytes, input int64, err error) {
	info, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	var h [chunkHeader]byte
	for fileBytes+chunkHeader <= info.Size() {
		if _, err := f.ReadAt(h[:], fileBytes); err != nil {
			return 0, 0, err
		}
		size := int64(binary.LittleEndian.Uint32(h[:]))
		if fileBytes+chunkHeader+size > info.Size() {
			break // torn
		}
		fileBytes += chunkHeader + size
		input += size
	}
	return fileBytes, input, nil
}

// Open implements Store.
func (d *Dir) Open(_ context.Context, id string) (io.ReadCloser, error) {
	path, err := d.file(id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	return &fileReader{chunkReader: chunkReader{r: f, tolerant: true}, f: f}, nil
}

type fileReader struct {
	chunkReader
	f *os.File
}

func (r *fileReader) Close() error { return r.f.Close() }

// Size implements Store.
func (d *Dir) Size(_ context.Context, id string) (int64, error) {
	path, err := d.file(id)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("staging: %w", err)
	}
	defer f.Close()
	_, input, err := walk(f)
	return input, err
}

// Delete implements Store.
func (d *Dir) Delete(_ context.Context, id string) error {
	path, err := d.file(id)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	if info.Size() < trashFrom {
		if !d.recycle(path, id) {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("staging: %w", err)
			}
		}
		d.used.Add(-info.Size())
		return nil
	}
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	gone := filepath.Join(d.path, trash, id+"-"+hex.EncodeToString(suffix[:]))
	if err := os.Rename(path, gone); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted meanwhile
		}
		return fmt.Errorf("staging: %w", err)
	}
	d.used.Add(-info.Size())
	d.remove(gone)
	return nil
}

// remove removes a file of the trash in the background.
func (d *Dir) remove(path string) {
	d.removing.Add(1)
	go func() {
		defer d.removing.Done()
		_ = os.Remove(path) // what fails stays for the next start
	}()
}

// fileWriter writes each Write as one chunk straight to the file: the
// bytes are in the operating system's hands (they survive the process)
// when Write returns; Close also syncs them to disk.
type fileWriter struct {
	d      *Dir
	f      *os.File
	staged int64
	err    error
	buf    []byte // the last chunk as framed
}

func (w *fileWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	if n == 0 {
		return 0, nil
	}
	if w.d.max > 0 && w.d.used.Load()+int64(len(p)) > w.d.max {
		w.err = fmt.Errorf("%w: %d of %d bytes used", ErrFull, w.d.used.Load(), w.d.max)
		return 0, w.err
	}
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxChunk)]
		// One write for header and payload, so that a crash tears at most
		// the chunk being written.
		buf := append(appendFrame(w.buf[:0], chunk), chunk...)
		w.buf = buf[:0] // reused: a chunk's copy is not garbage each time
		if _, err := w.f.Write(buf); err != nil {
			w.err = fmt.Errorf("staging: %w", err)
			return 0, w.err
		}
		w.d.used.Add(int64(len(buf)))
		w.staged += int64(len(chunk))
		p = p[len(chunk):]
	}
	return n, nil
}

func (w *fileWriter) Flush() error { return w.err }

func (w *fileWriter) Staged() int64 { return w.staged }

func (w *fileWriter) Discard() error { return w.f.Close() }

func (w *fileWriter) Close() error {
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return fmt.Errorf("staging: %w", err)
	}
	return w.f.Close()
}
