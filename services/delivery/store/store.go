// Package store is the delivery service's storage: SQLite by default,
// PostgreSQL in production, with the migrations embedded and run on open.
package store

import (
	"context"
	"embed"
	"errors"
	"io/fs"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/sqlstore"
)

//go:embed migrations
var migrations embed.FS

// Columns of the deliveries table that List filters on.
const (
	DestinationColumn = "destination"
	StateColumn       = "state"
	// IdempotencyColumn holds IdempotencyKey of a delivery with a key:
	// unique, so that two deliveries with one key cannot both be created.
	IdempotencyColumn = "idempotency"
)

// IdempotencyKey answers what the idempotency column holds for a delivery
// with key to destination; nil (NULL) without a key.
func IdempotencyKey(destination, key string) any {
	if key == "" {
		return nil
	}
	return destination + "\n" + key
}

// Store holds the delivery service's tables.
type Store struct {
	db            *sqlstore.DB
	Deliveries    *resourcestore.Table[*deliveryv1.Delivery]
	Workflows     *resourcestore.Table[*deliveryv1.Workflow]
	Notifications *resourcestore.Table[*deliveryv1.Notification]
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
	s := &Store{db: db}
	var e1, e2, e3 error
	s.Deliveries, e1 = resourcestore.New(db, "deliveries",
		resourcestore.Column[*deliveryv1.Delivery]{Name: DestinationColumn, Value: func(d *deliveryv1.Delivery) any { return d.GetDestination() }},
		resourcestore.Column[*deliveryv1.Delivery]{Name: StateColumn, Value: func(d *deliveryv1.Delivery) any { return int32(d.GetState()) }},
		resourcestore.Column[*deliveryv1.Delivery]{Name: IdempotencyColumn, Value: func(d *deliveryv1.Delivery) any {
			return IdempotencyKey(d.GetDestination(), d.GetIdempotencyKey())
		}},
	)
	s.Workflows, e2 = resourcestore.New[*deliveryv1.Workflow](db, "workflows")
	s.Notifications, e3 = resourcestore.New[*deliveryv1.Notification](db, "notifications")
	if err := errors.Join(e1, e2, e3); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Dialect answers the engine behind the store.
func (s *Store) Dialect() sqlstore.Dialect { return s.db.Dialect }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }
