package testenv

import (
	"path/filepath"
	"testing"
)

// Backend is a database a store's conformance suite runs on.
type Backend struct {
	// Name is `sqlite` or `postgres`.
	Name string
	// DSN answers a fresh, empty database for one test.
	DSN func(tb testing.TB) string
}

// Backends answers every database backend Sluice supports: a SQLite file in
// the test's temporary directory, and a new database on the package's
// shared PostgreSQL.
func Backends() []Backend {
	return []Backend{
		{Name: "sqlite", DSN: func(tb testing.TB) string { return "sqlite:" + filepath.Join(tb.TempDir(), "store.db") }},
		{Name: "postgres", DSN: func(tb testing.TB) string { return NewDatabase(tb) }},
	}
}
