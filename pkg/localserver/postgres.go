package localserver

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// Postgres is a PostgreSQL server for tests: a throwaway cluster the harness
// started, or the server named by $SLUICE_TEST_POSTGRES_DSN.
type Postgres struct {
	// DSN connects as a superuser to the `postgres` database.
	DSN string

	proc *process
	dir  string
}

// StartPostgres uses $SLUICE_TEST_POSTGRES_DSN when set; otherwise it runs
// initdb and postgres on a fresh directory and a random port. initdb refuses
// to run as root, so as root both run as the `postgres` system user on a
// directory it owns.
func StartPostgres() (*Postgres, error) {
	if dsn := os.Getenv("SLUICE_TEST_POSTGRES_DSN"); dsn != "" {
		p := &Postgres{DSN: dsn}
		if err := p.ping(context.Background()); err != nil {
			return nil, fmt.Errorf("SLUICE_TEST_POSTGRES_DSN does not answer: %w", err)
		}
		announce("PostgreSQL from SLUICE_TEST_POSTGRES_DSN")
		return p, nil
	}
	bindir, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sluice-postgres-")
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	cred, err := postgresCredential(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bindir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("postgres: initdb: %w\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bindir, "postgres"), "-D", data,
		"-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		// A throwaway cluster needs no durability; this keeps tests fast.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	p := &Postgres{
		DSN: fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", hostPort(port)),
		dir: dir,
	}
	p.proc, err = startProcess("PostgreSQL", cmd, filepath.Join(dir, "postgres.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := p.proc.waitReady(60*time.Second, p.ping); err != nil {
		p.Stop()
		return nil, err
	}
	announce("PostgreSQL ready at %s", hostPort(port))
	return p, nil
}

func postgresBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
		return filepath.Dir(p), nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	return "", fmt.Errorf("PostgreSQL server binaries (initdb, postgres) not found: install them with `apt-get install -y postgresql`, or set SLUICE_TEST_POSTGRES_DSN to a server the tests may create databases on")
}

// postgresCredential answers who runs the cluster: nobody special when the
// tests are not root; the postgres user, owning dir, when they are.
func postgresCredential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("tests run as root and initdb refuses root, but there is no `postgres` user to run it as: install PostgreSQL with `apt-get install -y postgresql` (it creates the user) or set SLUICE_TEST_POSTGRES_DSN")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("postgres: chown %s: %w", dir, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (p *Postgres) ping(ctx context.Context) error {
	db, err := sql.Open("pgx", p.DSN)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

// Pid answers the postmaster's process id (0 for a server named by
// $SLUICE_TEST_POSTGRES_DSN); each connection's backend is its child.
func (p *Postgres) Pid() int {
	if p.proc == nil {
		return 0
	}
	return p.proc.cmd.Process.Pid
}

// Stop stops a cluster the harness started (fast shutdown, by process id).
func (p *Postgres) Stop() {
	if p.proc == nil {
		return
	}
	p.proc.stop(syscall.SIGINT, 10*time.Second)
	os.RemoveAll(p.dir)
}

// CreateDatabase creates an empty database and answers its DSN and a
// function that drops it.
func (p *Postgres) CreateDatabase(ctx context.Context) (dsn string, drop func(), err error) {
	db, err := sql.Open("pgx", p.DSN)
	if err != nil {
		return "", nil, err
	}
	defer db.Close()
	name := "test_" + randomHex(8)
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("postgres: create database: %w", err)
	}
	u, err := url.Parse(p.DSN)
	if err != nil {
		return "", nil, fmt.Errorf("postgres: parse DSN: %w", err)
	}
	u.Path = "/" + name
	drop = func() {
		db, err := sql.Open("pgx", p.DSN)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	return u.String(), drop, nil
}
