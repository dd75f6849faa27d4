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
	DSN func(t *testing.T) string
}

// Backends answers every database backend Sluice supports: a SQLite file in
// the test's temporary directory, and a new database on the package's
// shared PostgreSQL.
func Backends() []Backend {
	return []Backend{
		{Name: "sqlite", DSN: func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "store.db") }},
		{Name: "postgres", DSN: func(t *testing.T) string { return NewDatabase(t) }},
	}
}
