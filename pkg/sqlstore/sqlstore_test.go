package sqlstore_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sluicehq/sluice/pkg/sqlstore"
	"github.com/sluicehq/sluice/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func migrations(extra ...string) fstest.MapFS {
	fs := fstest.MapFS{}
	for _, d := range []string{"sqlite", "postgres"} {
		fs[d+"/0001_items.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE);`)}
		for i, e := range extra {
			fs[d+"/000"+string(rune('2'+i))+"_more.sql"] = &fstest.MapFile{Data: []byte(e)}
		}
	}
	return fs
}

// Migrations apply once, later ones apply on the next open, and constraint
// violations are recognised on both engines.
func TestMigrationsAndUniqueViolation(t *testing.T) {
	ctx := context.Background()
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			dsn := b.DSN(t)
			db, err := sqlstore.Open(ctx, dsn, migrations())
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if _, err := db.ExecContext(ctx, db.Rebind(`INSERT INTO items (id, v) VALUES (?, ?)`), 1, "a"); err != nil {
				t.Fatal(err)
			}
			_, err = db.ExecContext(ctx, db.Rebind(`INSERT INTO items (id, v) VALUES (?, ?)`), 2, "a")
			if !sqlstore.IsUniqueViolation(err) {
				t.Fatalf("duplicate value: got %v, want a unique violation", err)
			}
			db.Close()

			db, err = sqlstore.Open(ctx, dsn, migrations(`ALTER TABLE items ADD COLUMN w TEXT NOT NULL DEFAULT 'x';`))
			if err != nil {
				t.Fatalf("reopen with a new migration: %v", err)
			}
			defer db.Close()
			var v, w string
			if err := db.QueryRowContext(ctx, db.Rebind(`SELECT v, w FROM items WHERE id = ?`), 1).Scan(&v, &w); err != nil {
				t.Fatal(err)
			}
			if v != "a" || w != "x" {
				t.Fatalf("got (%q, %q), want (a, x)", v, w)
			}
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 2 {
				t.Fatalf("schema_migrations has %d rows, want 2", n)
			}
		})
	}
}

func TestBadMigrationNamesAreRefused(t *testing.T) {
	fs := fstest.MapFS{"sqlite/init.sql": &fstest.MapFile{Data: []byte(`SELECT 1;`)}}
	_, err := sqlstore.Open(context.Background(), "sqlite:"+t.TempDir()+"/db", fs)
	if err == nil || !strings.Contains(err.Error(), "positive number") {
		t.Fatalf("got %v, want a complaint about the migration's name", err)
	}
}

func TestRebind(t *testing.T) {
	pg := &sqlstore.DB{Dialect: sqlstore.Postgres}
	got := pg.Rebind(`SELECT '?' FROM t WHERE a = ? AND b = ?`)
	if want := `SELECT '?' FROM t WHERE a = $1 AND b = $2`; got != want {
		t.Fatalf("Rebind = %q, want %q", got, want)
	}
	lite := &sqlstore.DB{Dialect: sqlstore.SQLite}
	if q := `SELECT ? `; lite.Rebind(q) != q {
		t.Fatal("Rebind changed a SQLite query")
	}
}

// Issue 9, item 14: the database, its WAL and shared-memory files are 0600
// and their directory 0700, in a fresh data directory and in one whose
// files were created wider before.
func TestSQLiteFilesArePrivate(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, dir string) {
		t.Helper()
		path := filepath.Join(dir, "data", "svc.db")
		db, err := sqlstore.Open(ctx, "sqlite:"+path, migrations())
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, `INSERT INTO items (id, v) VALUES (1, 'a')`); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("data directory: %v, %v; want 0700", fi.Mode().Perm(), err)
		}
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s: %v", filepath.Base(p), err)
				continue
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s is %v, want 0600", filepath.Base(p), fi.Mode().Perm())
			}
		}
	}
	t.Run("fresh", func(t *testing.T) { check(t, t.TempDir()) })
	t.Run("existing", func(t *testing.T) {
		dir := t.TempDir()
		old := syscall.Umask(0o022)
		defer syscall.Umask(old)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.WriteFile(filepath.Join(dir, "data", "svc.db"+suffix), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		check(t, dir)
	})
}

// However many callers at once, a DB holds at most MaxConns connections on
// either engine: on SQLite that bounds its file descriptors (#22: 20,000
// stalled streams opened 10,000 and starved the process).
func TestConnectionsAreCapped(t *testing.T) {
	ctx := context.Background()
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			dsn := b.DSN(t)
			db, err := sqlstore.Open(ctx, dsn, migrations())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			before := dbFiles(t, dsn)
			// Each caller holds its connection until all have asked for
			// one, or until it is clear the rest are waiting.
			const callers = 200
			var wg sync.WaitGroup
			release := make(chan struct{})
			var holding atomic.Int64
			for i := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					conn, err := db.Conn(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					defer conn.Close()
					holding.Add(1)
					if _, err := conn.ExecContext(ctx, db.Rebind(`SELECT count(*) FROM items WHERE id > ?`), i); err != nil {
						t.Error(err)
					}
					<-release
				}()
			}
			for range 100 {
				if holding.Load() >= sqlstore.MaxConns {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			open, files := db.Stats().OpenConnections, dbFiles(t, dsn)-before
			close(release)
			wg.Wait()
			if holding.Load() != callers {
				t.Fatalf("%d of %d callers got a connection", holding.Load(), callers)
			}
			if open > sqlstore.MaxConns {
				t.Fatalf("%d connections open at once, want at most %d", open, sqlstore.MaxConns)
			}
			if b.Name == "sqlite" && files > 3*sqlstore.MaxConns {
				t.Fatalf("%d descriptors on the database files, want at most %d", files, 3*sqlstore.MaxConns)
			}
			// The connections stay open for the next callers: closing all
			// but two (database/sql's default) made most PostgreSQL
			// transactions under load open a connection of their own
			// (#26).
			if closed := db.Stats().MaxIdleClosed; closed != 0 {
				t.Fatalf("%d connections were closed as idle beyond the pool's keep", closed)
			}
		})
	}
}

// dbFiles answers how many of this process's descriptors are open on a
// SQLite DSN's files (0 for PostgreSQL's).
func dbFiles(t *testing.T, dsn string) int {
	t.Helper()
	if !strings.HasPrefix(dsn, "sqlite:") {
		return 0
	}
	path := strings.TrimPrefix(dsn, "sqlite:")
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, path) {
			n++
		}
	}
	return n
}
