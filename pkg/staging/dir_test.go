package staging_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/sluicehq/sluice/pkg/staging"
)

func data(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func stage(t *testing.T, s staging.Store, id string, parts ...[]byte) {
	t.Helper()
	w, err := s.Create(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, s staging.Store, id string) ([]byte, error) {
	t.Helper()
	r, err := s.Open(context.Background(), id)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestDirStagesAndReadsBack(t *testing.T) {
	dir := t.TempDir()
	s, err := staging.NewDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := data(t, 1<<20), data(t, 12345)
	stage(t, s, "d1", a, b, nil)
	got, err := readAll(t, s, "d1")
	if err != nil || !bytes.Equal(got, append(append([]byte{}, a...), b...)) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	if n, err := s.Size(context.Background(), "d1"); err != nil || n != int64(len(a)+len(b)) {
		t.Fatalf("size %d, %v", n, err)
	}
	info, err := os.Stat(filepath.Join(dir, "d1.stage"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("staged file: %v %v", info, err)
	}
	// A store opened again counts what is there.
	again, err := staging.NewDir(dir, 0)
	if err != nil || again.Used() != s.Used() || s.Used() != info.Size() {
		t.Fatalf("used %d, again %d, file %d", s.Used(), again.Used(), info.Size())
	}
	if err := s.Delete(context.Background(), "d1"); err != nil || s.Used() != 0 {
		t.Fatalf("delete: %v, used %d", err, s.Used())
	}
	if _, err := s.Open(context.Background(), "d1"); !errors.Is(err, staging.ErrNotFound) {
		t.Fatalf("open after delete: %v", err)
	}
}

// A crash tears the last chunk: reading stops before it, and Append
// continues after the last whole chunk.
func TestDirTornTailAndAppend(t *testing.T) {
	dir := t.TempDir()
	s, _ := staging.NewDir(dir, 0)
	a, b := data(t, 5000), data(t, 7000)
	stage(t, s, "d1", a, b)
	path := filepath.Join(dir, "d1.stage")
	info, _ := os.Stat(path)
	if err := os.Truncate(path, info.Size()-100); err != nil {
		t.Fatal(err)
	}
	s, _ = staging.NewDir(dir, 0) // as a restarted process finds it
	got, err := readAll(t, s, "d1")
	if err != nil || !bytes.Equal(got, a) {
		t.Fatalf("after a torn tail: read %d bytes (%v), want the first %d", len(got), err, len(a))
	}
	w, held, err := s.Append(context.Background(), "d1")
	if err != nil || held != int64(len(a)) {
		t.Fatalf("append: held %d, %v", held, err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err = readAll(t, s, "d1")
	if err != nil || !bytes.Equal(got, append(append([]byte{}, a...), b...)) {
		t.Fatalf("after append: %d bytes, %v", len(got), err)
	}
	fi, _ := os.Stat(path)
	if s.Used() != fi.Size() {
		t.Fatalf("used %d, file %d", s.Used(), fi.Size())
	}
}

// A flipped bit is caught on read, never handed on.
func TestDirCorruptionIsCaught(t *testing.T) {
	dir := t.TempDir()
	s, _ := staging.NewDir(dir, 0)
	stage(t, s, "d1", data(t, 3000), data(t, 3000))
	path := filepath.Join(dir, "d1.stage")
	b, _ := os.ReadFile(path)
	b[3100] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := readAll(t, s, "d1")
	var ce *staging.CorruptError
	if !errors.As(err, &ce) || ce.Offset != 3000 {
		t.Fatalf("got %v, want a CorruptError at byte 3000", err)
	}
}

// The cap refuses new streams, and a stream that would pass it.
func TestDirCapCountsFraming(t *testing.T) {
	s, _ := staging.NewDir(t.TempDir(), 9000)
	w, err := s.Create(context.Background(), "d1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data(t, 6000)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data(t, 6000)); !errors.Is(err, staging.ErrFull) {
		t.Fatalf("write past the cap: %v", err)
	}
	w.Close()
	stage(t, s, "d2", data(t, 2992)) // 9,008 bytes with framing: full
	if _, err := s.Create(context.Background(), "d3"); !errors.Is(err, staging.ErrFull) {
		t.Fatalf("create when full: %v", err)
	}
	if _, err := s.Create(context.Background(), "../escape"); err == nil {
		t.Fatal("an id with a path was accepted")
	}
}

// Delete moves a file out of the way at once (its blocks are freed in the
// background, since unlinking a large file took a delivery's answer 16-45
// ms) and nothing of it stays: not in Used, not under its id, not in the
// trash once removed; what a stopped process left in the trash goes when
// the store opens again, and is never counted.
func TestDirDeleteFreesInTheBackground(t *testing.T) {
	dir := t.TempDir()
	d, err := staging.NewDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	// One large enough for the trash, one unlinked at once.
	stage(t, d, "gone", data(t, 4<<20), data(t, 5<<20))
	stage(t, d, "small", data(t, 1<<20))
	stage(t, d, "kept", data(t, 1000))
	if d.Used() < 10<<20 {
		t.Fatalf("used %d before the deletes", d.Used())
	}
	for _, id := range []string{"gone", "small"} {
		if err := d.Delete(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if _, err := readAll(t, d, id); !errors.Is(err, staging.ErrNotFound) {
			t.Fatalf("deleted stream %s opens: %v", id, err)
		}
		if err := d.Delete(context.Background(), id); err != nil {
			t.Fatalf("second delete of %s: %v", id, err)
		}
	}
	size, _ := d.Size(context.Background(), "kept")
	if d.Used() >= 1<<20 || d.Used() < size {
		t.Fatalf("used %d after the deletes, want kept's %d", d.Used(), size)
	}
	staging.WaitRemoved(d)
	if left, _ := os.ReadDir(filepath.Join(dir, ".trash")); len(left) != 0 {
		t.Fatalf("the trash holds %d files once removed", len(left))
	}

	// A process stopped before its trash was emptied.
	if err := os.WriteFile(filepath.Join(dir, ".trash", "crashed-0123"), data(t, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := staging.NewDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if again.Used() != d.Used() {
		t.Fatalf("reopened store uses %d, want %d (the trash is not counted)", again.Used(), d.Used())
	}
	staging.WaitRemoved(again)
	if left, _ := os.ReadDir(filepath.Join(dir, ".trash")); len(left) != 0 {
		t.Fatalf("the trash holds %d files after reopening", len(left))
	}
	if b, err := readAll(t, again, "kept"); err != nil || len(b) != 1000 {
		t.Fatalf("kept stream: %d bytes, %v", len(b), err)
	}
}

// A small stream's file, deleted, is emptied and kept as a spare that the
// next stream is renamed from: the new stream reads back as its own bytes
// only (nothing of the old one's longer content), Used counts neither the
// spare nor the deleted stream, Append and Size see the new stream, and a
// reopened store removes the spares a stopped process left.
func TestDirRecyclesSmallFiles(t *testing.T) {
	dir := t.TempDir()
	d, err := staging.NewDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stage(t, d, "first", data(t, 300_000), data(t, 200_000))
	inode := func(id string) uint64 {
		t.Helper()
		info, err := os.Stat(filepath.Join(dir, id+".stage"))
		if err != nil {
			t.Fatal(err)
		}
		return info.Sys().(*syscall.Stat_t).Ino
	}
	was := inode("first")
	if err := d.Delete(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	if d.Used() != 0 {
		t.Fatalf("used %d with only a spare", d.Used())
	}
	spares, _ := os.ReadDir(filepath.Join(dir, ".spare"))
	if len(spares) != 1 {
		t.Fatalf("%d spares after deleting a small stream", len(spares))
	}
	if info, _ := spares[0].Info(); info.Size() != 0 {
		t.Fatalf("the spare keeps %d bytes", info.Size())
	}
	want := data(t, 1000)
	stage(t, d, "second", want)
	if got := inode("second"); got != was {
		t.Fatalf("the second stream has inode %d, not the spare's %d", got, was)
	}
	if got, err := readAll(t, d, "second"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the stream in a reused file reads back %d bytes (%v), want its own %d", len(got), err, len(want))
	}
	if n, err := d.Size(ctx, "second"); err != nil || n != int64(len(want)) {
		t.Fatalf("size %d (%v), want %d", n, err, len(want))
	}
	w, held, err := d.Append(ctx, "second")
	if err != nil || held != int64(len(want)) {
		t.Fatalf("append answers %d held (%v), want %d", held, err, len(want))
	}
	more := data(t, 500)
	if _, err := w.Write(more); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := readAll(t, d, "second"); !bytes.Equal(got, append(want, more...)) {
		t.Fatalf("appended stream reads back %d bytes, want %d", len(got), len(want)+len(more))
	}
	if left, _ := os.ReadDir(filepath.Join(dir, ".spare")); len(left) != 0 {
		t.Fatalf("%d spares left once reused", len(left))
	}

	// A stopped process's spare, not emptied yet, is removed on open.
	if err := os.WriteFile(filepath.Join(dir, ".spare", "stopped-1"), data(t, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := staging.NewDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	staging.WaitRemoved(again)
	if left, _ := os.ReadDir(filepath.Join(dir, ".spare")); len(left) != 0 {
		t.Fatalf("%d spares after reopening", len(left))
	}
	if again.Used() != d.Used() {
		t.Fatalf("reopened store uses %d, want %d", again.Used(), d.Used())
	}
	stage(t, again, "third", want) // no spare: created afresh
	if got, _ := readAll(t, again, "third"); !bytes.Equal(got, want) {
		t.Fatal("a stream created with no spare does not read back")
	}
}
