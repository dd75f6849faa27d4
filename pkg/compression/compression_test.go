package compression_test

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/compression"
)

// tool answers the path of a command the checks need, failing loudly when
// the machine lacks it.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed to check the output with a tool no one here wrote: apt-get install -y %s", name, pkg)
	}
	return p
}

// payload is compressible text with some noise, a few MiB: several gzip
// blocks.
func payload() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < 3<<20 {
		fmt.Fprintf(&b, "%d,customer-%d,%f,\"Main St, %d\"\n", r.IntN(1e6), r.IntN(5000), r.Float64(), r.IntN(900))
	}
	return b.Bytes()
}

func write(t *testing.T, kind compression.Kind, dir string, data []byte) string {
	return writeOpts(t, kind, dir, data, false)
}

func writeOpts(t *testing.T, kind compression.Kind, dir string, data []byte, zip64 bool) string {
	t.Helper()
	out := filepath.Join(dir, "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	w, err := compression.New(f, kind, compression.Options{Name: "customers.csv", Modified: time.Date(2026, 3, 8, 9, 30, 0, 0, time.UTC), SpoolDir: spool, Zip64: zip64})
	if err != nil {
		t.Fatal(err)
	}
	// Odd-sized writes, as a format writer's buffer flushes them.
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 70001)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Fatalf("the spool was not cleaned up: %v", left)
	}
	return out
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return out
}

// Each layer is checked and unpacked by the system's own tools.
func TestLayersReadBackWithSystemTools(t *testing.T) {
	data := payload()
	gzip, unzip, tar := tool(t, "gzip", "gzip"), tool(t, "unzip", "unzip"), tool(t, "tar", "tar")
	tests := []struct {
		kind  compression.Kind
		check func(t *testing.T, file string) []byte
	}{
		{compression.None, func(t *testing.T, file string) []byte { b, _ := os.ReadFile(file); return b }},
		{compression.Gzip, func(t *testing.T, file string) []byte {
			run(t, gzip, "-t", file)
			return run(t, gzip, "-dc", file)
		}},
		{compression.Zip, func(t *testing.T, file string) []byte {
			run(t, unzip, "-t", file)
			if list := run(t, unzip, "-Z1", file); string(list) != "customers.csv\n" {
				t.Fatalf("zip holds %q", list)
			}
			return run(t, unzip, "-p", file, "customers.csv")
		}},
		{compression.Tar, func(t *testing.T, file string) []byte {
			if list := run(t, tar, "-tf", file); string(list) != "customers.csv\n" {
				t.Fatalf("tar holds %q", list)
			}
			return run(t, tar, "-xOf", file, "customers.csv")
		}},
		{compression.Tgz, func(t *testing.T, file string) []byte {
			run(t, gzip, "-t", file)
			return run(t, tar, "-xzOf", file, "customers.csv")
		}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.kind), func(t *testing.T) {
			file := write(t, tt.kind, t.TempDir(), data)
			if got := tt.check(t, file); !bytes.Equal(got, data) {
				t.Fatalf("unpacked %d bytes, differ from the %d written", len(got), len(data))
			}
		})
	}
}

func TestArchivesNeedAName(t *testing.T) {
	for _, k := range []compression.Kind{compression.Zip, compression.Tar, compression.Tgz} {
		if _, err := compression.New(&bytes.Buffer{}, k, compression.Options{}); err == nil {
			t.Fatalf("kind %d accepted an entry without a name", k)
		}
	}
}

// "Use Zip64": the archive is in Zip64 form from its first header, and
// both unzip and Go's reader accept it.
func TestZip64WhenAsked(t *testing.T) {
	data := payload()
	unzip, zipinfo := tool(t, "unzip", "unzip"), tool(t, "zipinfo", "unzip")
	file := writeOpts(t, compression.Zip, t.TempDir(), data, true)
	run(t, unzip, "-t", file)
	if got := run(t, unzip, "-p", file, "customers.csv"); !bytes.Equal(got, data) {
		t.Fatalf("unzip gave %d bytes, differ from the %d written", len(got), len(data))
	}
	info := string(run(t, zipinfo, "-v", file))
	for _, want := range []string{"ID 0x0001 (PKWARE 64-bit sizes)", "minimum software version required to extract:   4.5"} {
		if !strings.Contains(info, want) {
			t.Fatalf("zipinfo -v does not show %q:\n%s", want, info)
		}
	}
	// The local header itself says Zip64: version 4.5 and a 0x0001 extra.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	nameLen := int(raw[26]) | int(raw[27])<<8
	if raw[4] != 45 || raw[30+nameLen] != 0x01 || raw[31+nameLen] != 0x00 {
		t.Fatalf("the local header is not in Zip64 form: % x", raw[:30+nameLen+4])
	}
	zr, err := zip.OpenReader(file)
	if err != nil {
		t.Fatalf("archive/zip: %v", err)
	}
	defer zr.Close()
	if len(zr.File) != 1 || zr.File[0].Name != "customers.csv" || zr.File[0].UncompressedSize64 != uint64(len(data)) {
		t.Fatalf("archive/zip reads %+v", zr.File)
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("archive/zip: %v", err)
	}
}

// A spool counts what TAR writers hold, refuses past its cap, gives back
// on Close and Abort, and opening it removes what a stopped process left.
func TestSpoolIsCountedCappedAndCleared(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sluice-tar-spool-left"), []byte("rows of a killed process"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other"), []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	spool, err := compression.OpenSpool(dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sluice-tar-spool-left")); !os.IsNotExist(err) {
		t.Fatalf("a left spool stays: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "other")); err != nil {
		t.Fatalf("a file not a spool went: %v", err)
	}
	var out bytes.Buffer
	w, err := compression.New(&out, compression.Tar, compression.Options{Name: "a.csv", Spool: spool})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 600)); err != nil {
		t.Fatal(err)
	}
	if spool.Used() != 600 {
		t.Fatalf("used %d, want 600", spool.Used())
	}
	w2, err := compression.New(&out, compression.Tgz, compression.Options{Name: "b.csv", Spool: spool})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Write(make([]byte, 500)); !errors.Is(err, compression.ErrSpoolFull) {
		t.Fatalf("past the cap: %v, want ErrSpoolFull", err)
	}
	w2.(interface{ Abort() }).Abort()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if spool.Used() != 0 {
		t.Fatalf("used %d after Close and Abort, want 0", spool.Used())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "sluice-tar-spool-*")); len(left) != 0 {
		t.Fatalf("spools stay: %v", left)
	}
}
