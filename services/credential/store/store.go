// Package store is the credential service's storage: SQLite by default,
// PostgreSQL in production, with the migrations embedded and run on open.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/sqlstore"
)

//go:embed migrations
var migrations embed.FS

// Store holds the credential service's tables.
type Store struct {
	db *sqlstore.DB
	// Credentials are the stored credentials, secrets excluded.
	Credentials *resourcestore.Table[*credentialv1.Credential]
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
	creds, err := resourcestore.New[*credentialv1.Credential](db, "credentials")
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, Credentials: creds}, nil
}

// PutSecret stores a sealed secret for the credential name, replacing any
// earlier one, in the transaction of a credential write.
func (s *Store) PutSecret(name string, sealed []byte) resourcestore.Also {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO credential_secrets (name, sealed, update_time) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, update_time = excluded.update_time`),
			name, sealed, time.Now().UnixMicro())
		if err != nil {
			return fmt.Errorf("store secret of %s: %w", name, err)
		}
		return nil
	}
}

// DeleteSecret removes the secret of name, in the transaction of its delete.
func (s *Store) DeleteSecret(name string) resourcestore.Also {
	return func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM credential_secrets WHERE name = ?`), name); err != nil {
			return fmt.Errorf("delete secret of %s: %w", name, err)
		}
		return nil
	}
}

// Secret answers the sealed secret of name, or apierror.ErrNotFound.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	var sealed []byte
	err := s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT sealed FROM credential_secrets WHERE name = ?`), name).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("secret of %s: %w", name, apierror.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("secret of %s: %w", name, err)
	}
	return sealed, nil
}

// Dialect answers the engine behind the store.
func (s *Store) Dialect() sqlstore.Dialect { return s.db.Dialect }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }
