// Package store is the delivery service's storage: SQLite by default,
// PostgreSQL in production, with the migrations embedded and run on open.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/lease"
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
	// AcknowledgedColumn of notifications is 1 once acknowledged, else 0.
	AcknowledgedColumn = "acknowledged"
	// DeliveryColumn and TypeColumn of events are what ListEvents filters
	// on beside the destination.
	DeliveryColumn = "delivery"
	TypeColumn     = "type"
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
	Subscriptions *resourcestore.Table[*deliveryv1.Subscription]
	// Events is the outbox: events written with the changes that cause
	// them, and how sending them went.
	Events *resourcestore.Table[*deliveryv1.Event]
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
	var e1, e2, e3, e4, e5 error
	s.Deliveries, e1 = resourcestore.New(db, "deliveries",
		resourcestore.Column[*deliveryv1.Delivery]{Name: DestinationColumn, Value: func(d *deliveryv1.Delivery) any { return d.GetDestination() }},
		resourcestore.Column[*deliveryv1.Delivery]{Name: StateColumn, Value: func(d *deliveryv1.Delivery) any { return int32(d.GetState()) }},
		resourcestore.Column[*deliveryv1.Delivery]{Name: IdempotencyColumn, Value: func(d *deliveryv1.Delivery) any {
			return IdempotencyKey(d.GetDestination(), d.GetIdempotencyKey())
		}},
		resourcestore.Column[*deliveryv1.Delivery]{Name: "owner", Value: func(d *deliveryv1.Delivery) any { return d.GetServiceInstance() }},
		resourcestore.Column[*deliveryv1.Delivery]{Name: "staged_held", Value: func(d *deliveryv1.Delivery) any {
			if !heldInput(d) {
				return int64(0)
			}
			return d.GetStagedInput().GetBytes()
		}},
		resourcestore.Column[*deliveryv1.Delivery]{Name: "staged_expire", Value: func(d *deliveryv1.Delivery) any {
			in := d.GetStagedInput()
			held := in.GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED || in.GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD
			if !held || in.GetExpireTime() == nil {
				return int64(0)
			}
			return in.GetExpireTime().AsTime().UnixMicro()
		}},
	)
	s.Workflows, e2 = resourcestore.New(db, "workflows",
		resourcestore.Column[*deliveryv1.Workflow]{Name: DestinationColumn, Value: func(w *deliveryv1.Workflow) any { return w.GetDestination() }},
		resourcestore.Column[*deliveryv1.Workflow]{Name: StateColumn, Value: func(w *deliveryv1.Workflow) any { return int32(w.GetState()) }},
	)
	s.Notifications, e3 = resourcestore.New(db, "notifications",
		resourcestore.Column[*deliveryv1.Notification]{Name: DestinationColumn, Value: func(n *deliveryv1.Notification) any { return n.GetDestination() }},
		resourcestore.Column[*deliveryv1.Notification]{Name: AcknowledgedColumn, Value: func(n *deliveryv1.Notification) any {
			if n.GetAcknowledged() {
				return int32(1)
			}
			return int32(0)
		}},
	)
	s.Subscriptions, e4 = resourcestore.New(db, "subscriptions",
		resourcestore.Column[*deliveryv1.Subscription]{Name: DestinationColumn, Value: func(x *deliveryv1.Subscription) any { return x.GetDestination() }},
		resourcestore.Column[*deliveryv1.Subscription]{Name: "paused", Value: func(x *deliveryv1.Subscription) any {
			if x.GetPaused() {
				return int32(1)
			}
			return int32(0)
		}},
	)
	s.Events, e5 = resourcestore.New(db, "events",
		resourcestore.Column[*deliveryv1.Event]{Name: DestinationColumn, Value: func(e *deliveryv1.Event) any { return e.GetDestination() }},
		resourcestore.Column[*deliveryv1.Event]{Name: DeliveryColumn, Value: func(e *deliveryv1.Event) any { return e.GetDelivery() }},
		resourcestore.Column[*deliveryv1.Event]{Name: TypeColumn, Value: func(e *deliveryv1.Event) any { return int32(e.GetType()) }},
		resourcestore.Column[*deliveryv1.Event]{Name: "due", Value: func(e *deliveryv1.Event) any { return Due(e) }},
	)
	if err := errors.Join(e1, e2, e3, e4, e5); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// heldInput reports whether a delivery keeps its input after it stopped:
// failed and held for a resolution, or interrupted and resumable.
func heldInput(d *deliveryv1.Delivery) bool {
	in := d.GetStagedInput()
	return in.GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED || in.GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD
}

// heldStagingQuery reads only the deliveries_holding_staging index: its
// `staged_held > 0` is the index's own condition.
const heldStagingQuery = `SELECT COALESCE(SUM(staged_held), 0) FROM deliveries WHERE staged_held > 0 AND substr(parent, 1, ?) = ?`

// HeldStaging answers the bytes of input kept for the deliveries of a
// tenant that stopped (failed and held, or interrupted): what counts
// against the tenant's share of staging beside what its running
// deliveries stage.
func (s *Store) HeldStaging(ctx context.Context, tenant string) (int64, error) {
	var n int64
	err := s.readHeldStaging(ctx, s.db.QueryRowContext, tenant, &n)
	return n, err
}

// ReadingHeldStaging reads HeldStaging(tenant) into *into in another
// write's transaction: a Deliver reads it as it creates its delivery, one
// round trip fewer.
func (s *Store) ReadingHeldStaging(tenant string, into *int64) resourcestore.Also {
	return func(ctx context.Context, tx *sql.Tx) error {
		return s.readHeldStaging(ctx, tx.QueryRowContext, tenant, into)
	}
}

func (s *Store) readHeldStaging(ctx context.Context, query func(context.Context, string, ...any) *sql.Row, tenant string, into *int64) error {
	prefix := "tenants/" + tenant + "/"
	if err := query(ctx, s.db.Rebind(heldStagingQuery), len(prefix), prefix).Scan(into); err != nil {
		return fmt.Errorf("held staging of %s: %w", tenant, err)
	}
	return nil
}

// Key answers the key named name that every replica shares, made at
// random (32 bytes) by the first to ask.
func (s *Store) Key(ctx context.Context, name string) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	if _, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO keys (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`), name, fresh); err != nil {
		return nil, fmt.Errorf("make key %s: %w", name, err)
	}
	var key []byte
	if err := s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT value FROM keys WHERE name = ?`), name).Scan(&key); err != nil {
		return nil, fmt.Errorf("read key %s: %w", name, err)
	}
	return key, nil
}

// Work answers the work table (running deliveries, resolutions, the
// sweeper) as holder sees it, with leases of ttl.
func (s *Store) Work(holder string, ttl time.Duration) *lease.Queue {
	return lease.New(s.db, "work", holder, ttl)
}

// Leased reports whether the work table holds a row for id: work that
// someone holds or that waits to be claimed. A delivery that ended has
// none.
func (s *Store) Leased(ctx context.Context, id string) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT COUNT(*) FROM work WHERE id = ?`), id).Scan(&n); err != nil {
		return false, fmt.Errorf("work %s: %w", id, err)
	}
	return n > 0, nil
}

// CancelRequest is a CancelDelivery asked of a running delivery.
type CancelRequest struct {
	// KeepInput keeps the whole input for a restart later.
	KeepInput bool
	// Subject is who asked.
	Subject string
}

// RequestCancel records that a running delivery is to be cancelled.
func (s *Store) RequestCancel(ctx context.Context, delivery string, r CancelRequest) error {
	keep := 0
	if r.KeepInput {
		keep = 1
	}
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO cancels (delivery, keep_input, subject) VALUES (?, ?, ?)
		ON CONFLICT (delivery) DO UPDATE SET keep_input = excluded.keep_input, subject = excluded.subject`), delivery, keep, r.Subject)
	if err != nil {
		return fmt.Errorf("request the cancel of %s: %w", delivery, err)
	}
	return nil
}

// CancelRequested answers the cancel asked of a delivery; nil when none.
func (s *Store) CancelRequested(ctx context.Context, delivery string) (*CancelRequest, error) {
	var keep int
	r := &CancelRequest{}
	err := s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT keep_input, subject FROM cancels WHERE delivery = ?`), delivery).Scan(&keep, &r.Subject)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the cancel of %s: %w", delivery, err)
	}
	r.KeepInput = keep == 1
	return r, nil
}

// ForgetCancel removes a delivery's cancel request.
func (s *Store) ForgetCancel(ctx context.Context, delivery string) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error { return s.ForgettingCancel(delivery)(ctx, tx) })
}

// ForgettingCancel answers the removal of a delivery's cancel request, as
// work for the move that settles (or restarts) it.
func (s *Store) ForgettingCancel(delivery string) resourcestore.Also {
	return func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM cancels WHERE delivery = ?`), delivery); err != nil {
			return fmt.Errorf("forget the cancel of %s: %w", delivery, err)
		}
		return nil
	}
}

// Expired answers deliveries whose held input expired before now.
func (s *Store) Expired(ctx context.Context, now time.Time, limit int) ([]*deliveryv1.Delivery, error) {
	return s.Deliveries.Find(ctx, limit, `staged_expire > 0 AND staged_expire < ?`, now.UnixMicro())
}

// Write is one object a delivery writes: its key, its multipart upload
// while one is open, and what landed once it did.
type Write struct {
	Bucket, Key, UploadID string
	// Landed is the whole object, once it landed; nil before.
	Landed *Landed
}

// Landed is an object that landed whole.
type Landed struct {
	Bytes  int64  `json:"bytes"`
	Parts  int    `json:"parts"`
	CRC32C string `json:"crc32c,omitempty"`
	SHA256 string `json:"sha256"`
	// Fingerprint names the settings it was written with: a later run
	// keeps it only with the same.
	Fingerprint string `json:"fingerprint"`
}

// RecordWrite records that delivery writes each key (and, once started,
// its upload, and once there, what landed), before any byte of it goes to
// S3: several records in one transaction, in order.
func (s *Store) RecordWrite(ctx context.Context, delivery string, ws ...Write) error {
	q := s.db.Rebind(`INSERT INTO writes (delivery, bucket, object_key, upload_id, create_time, landed) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (delivery, object_key) DO UPDATE SET bucket = excluded.bucket, upload_id = excluded.upload_id, landed = excluded.landed`)
	err := s.db.InTx(ctx, func(tx *sql.Tx) error { // fenced, as every write of a lease's holder
		for _, w := range ws { // in order: a later record of a key replaces an earlier one
			landed := ""
			if w.Landed != nil {
				b, err := json.Marshal(w.Landed)
				if err != nil {
					return err
				}
				landed = string(b)
			}
			if _, err := tx.ExecContext(ctx, q, delivery, w.Bucket, w.Key, w.UploadID, time.Now().UnixMicro(), landed); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		keys := make([]string, 0, 3)
		for _, w := range ws[:min(3, len(ws))] {
			keys = append(keys, w.Key)
		}
		return fmt.Errorf("record the write of %s (%d objects): %w", strings.Join(keys, ", "), len(ws), err)
	}
	return nil
}

// Writes answers what delivery recorded, in key order.
func (s *Store) Writes(ctx context.Context, delivery string) ([]Write, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT bucket, object_key, upload_id, landed FROM writes WHERE delivery = ? ORDER BY object_key`), delivery)
	if err != nil {
		return nil, fmt.Errorf("writes of %s: %w", delivery, err)
	}
	defer rows.Close()
	var out []Write
	for rows.Next() {
		var w Write
		var landed string
		if err := rows.Scan(&w.Bucket, &w.Key, &w.UploadID, &landed); err != nil {
			return nil, err
		}
		if landed != "" {
			w.Landed = &Landed{}
			if err := json.Unmarshal([]byte(landed), w.Landed); err != nil {
				return nil, fmt.Errorf("what landed under %s: %w", w.Key, err)
			}
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// ForgetWrites drops delivery's records: its objects are complete and
// answered, or taken back.
func (s *Store) ForgetWrites(ctx context.Context, delivery string) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error { return s.ForgettingWrites(delivery)(ctx, tx) })
}

// ForgettingWrites answers ForgetWrites as work for the move that settles
// the delivery: a success's records go in the transaction that stores it,
// so that no crash leaves a running delivery with its records gone.
func (s *Store) ForgettingWrites(delivery string) resourcestore.Also {
	return func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM writes WHERE delivery = ?`), delivery); err != nil {
			return fmt.Errorf("forget the writes of %s: %w", delivery, err)
		}
		return nil
	}
}

// RecordedWrite is a recorded write as the sweeper sees it: with when it
// was first recorded, and what became of its delivery.
type RecordedWrite struct {
	Write
	Delivery    string
	Recorded    time.Time
	Destination string // "" when the delivery is gone
	State       deliveryv1.DeliveryState
	// Running says the delivery has work leased or waiting (it runs, or a
	// replica will take it over): its writes are that work's to finish.
	Running bool
	// Kept says the delivery keeps its input for a resolution: its writes
	// wait for retry-task, or for the input's expiry to take them back.
	Kept bool
}

// RecordedWrites answers every recorded write, by delivery and key: the
// only uploads the sweeper may touch, since Sluice writes into buckets it
// does not own.
func (s *Store) RecordedWrites(ctx context.Context) ([]RecordedWrite, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT w.delivery, w.bucket, w.object_key, w.upload_id, w.create_time,
		COALESCE(d.destination, ''), COALESCE(d.state, 0),
		EXISTS (SELECT 1 FROM work k WHERE k.id = 'delivery:' || w.delivery),
		COALESCE(d.staged_expire, 0) > 0
		FROM writes w LEFT JOIN deliveries d ON d.name = w.delivery ORDER BY w.delivery, w.object_key`)
	if err != nil {
		return nil, fmt.Errorf("recorded writes: %w", err)
	}
	defer rows.Close()
	var out []RecordedWrite
	for rows.Next() {
		var w RecordedWrite
		var created int64
		var state int32
		if err := rows.Scan(&w.Delivery, &w.Bucket, &w.Key, &w.UploadID, &created, &w.Destination, &state, &w.Running, &w.Kept); err != nil {
			return nil, err
		}
		w.Recorded, w.State = time.UnixMicro(created), deliveryv1.DeliveryState(state)
		out = append(out, w)
	}
	return out, rows.Err()
}

// ClearUpload forgets the upload recorded for delivery's key, when it is
// still uploadID: the upload was aborted, the key's record stays for
// taking back what landed under it.
func (s *Store) ClearUpload(ctx context.Context, delivery, key, uploadID string) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE writes SET upload_id = '' WHERE delivery = ? AND object_key = ? AND upload_id = ?`), delivery, key, uploadID)
		return err
	})
}

// Dialect answers the engine behind the store.
func (s *Store) Dialect() sqlstore.Dialect { return s.db.Dialect }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }
