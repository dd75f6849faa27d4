// Package store is the destination service's storage: SQLite by default,
// PostgreSQL in production, with the migrations embedded and run on open.
package store

import (
	"context"
	"embed"
	"io/fs"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/sqlstore"
)

//go:embed migrations
var migrations embed.FS

// CredentialColumn holds each destination's credential, for filtering.
const CredentialColumn = "credential"

// Store holds the destination service's tables.
type Store struct {
	db *sqlstore.DB
	// Destinations are the stored destinations.
	Destinations *resourcestore.Table[*destinationv1.Destination]
}

// Open connects to dsn (see sqlstore.Open) and migrates the schema.
func Open(ctx context.Context, dsn string) (*Store, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	db, err := sqlstore.Open(ctx, dsn, sub)
	if err != nil {
		return nil, err
	}
	dests, err := resourcestore.New(db, "destinations", resourcestore.Column[*destinationv1.Destination]{
		Name: CredentialColumn, Value: func(d *destinationv1.Destination) any { return d.GetCredential() },
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, Destinations: dests}, nil
}

// Dialect answers the engine behind the store.
func (s *Store) Dialect() sqlstore.Dialect { return s.db.Dialect }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }
