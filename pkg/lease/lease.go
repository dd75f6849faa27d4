// Package lease hands work kept in a SQL table to one holder at a time,
// so that several replicas of a service on one PostgreSQL share it: a
// holder claims a row with `FOR UPDATE SKIP LOCKED`, keeps it with a
// heartbeat, and loses it when the heartbeat stops for a lease's length;
// each claim raises the row's fencing token, which every write of the
// holder checks in its own transaction, so that a holder that was only slow
// cannot write over its successor. On SQLite (one process, one writer at a
// time) the same statements run without the row locks.
//
// Why not riverqueue/river: its stuck-job rescue waits an hour by default
// and may then run a job twice, which for a delivery means two writers of
// one object, and its SQLite driver is early. The work here is small (a
// handful of kinds, one row per delivery being worked on) and needs the
// fencing token in the same transaction as the service's own writes,
// which a job queue does not give.
//
// Times are the database's clock, never a replica's, so that replicas
// whose clocks disagree still agree on when a lease ran out.
package lease

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluicehq/sluice/pkg/sqlstore"
)

// Schema is the table a Queue works on, valid on both engines; a service
// creates it (under its own name) in its migrations.
//
//	id          the work's stable name, e.g. "delivery:tenants/t/.../deliveries/d1"
//	kind        what the work is, for the holder to dispatch on
//	subject     the resource it works on
//	trace       the W3C traceparent of the request that started the work
//	holder      the instance holding it, '' when free
//	token       the fencing token: raised by every claim
//	lease_until when the lease runs out (µs since the epoch, database clock)
//	run_after   not to be claimed before (µs since the epoch)
//	attempts    how many times it was claimed
const Schema = `CREATE TABLE %s (
	id TEXT PRIMARY KEY,
	kind TEXT NOT NULL,
	subject TEXT NOT NULL DEFAULT '',
	trace TEXT NOT NULL DEFAULT '',
	holder TEXT NOT NULL DEFAULT '',
	token BIGINT NOT NULL DEFAULT 0,
	lease_until BIGINT NOT NULL DEFAULT 0,
	run_after BIGINT NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX %[1]s_due ON %[1]s (lease_until, run_after);`

// ErrLost is the work having passed to another holder (or been finished by
// one): the holder must stop, and its writes are refused.
var ErrLost = errors.New("the lease on this work passed to another holder")

// ErrHeld is work that a live holder holds.
var ErrHeld = errors.New("the work is held by another live holder")

// Queue is the work of one table, seen by one holder.
type Queue struct {
	db     *sqlstore.DB
	table  string
	holder string
	ttl    time.Duration
	now    string
	lock   string
}

// New answers the queue of table for holder (this instance's name, unique
// among the replicas), whose leases last ttl unless kept.
func New(db *sqlstore.DB, table, holder string, ttl time.Duration) *Queue {
	q := &Queue{db: db, table: table, holder: holder, ttl: ttl}
	if db.Dialect == sqlstore.Postgres {
		q.now = `(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT`
		// A row another transaction claims or fences is skipped, not
		// waited for: the next is taken instead.
		q.lock = ` FOR UPDATE SKIP LOCKED`
	} else {
		q.now = `CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)`
	}
	return q
}

// TTL answers how long a lease lasts without its heartbeat.
func (q *Queue) TTL() time.Duration { return q.ttl }

// Work is what a lease is on.
type Work struct {
	ID, Kind, Subject string
	// Trace is the W3C traceparent of the request that started the work,
	// for the holder that runs it later to continue its story.
	Trace string
}

// Lease is a holder's claim on work, valid while its token is the row's.
type Lease struct {
	Work
	// Token is the fencing token: each claim of the work raises it.
	Token int64
	// Attempt counts the claims of the work, this one included.
	Attempt int
	q       *Queue
}

// Take answers a lease on w that Hold takes, in the transaction that
// starts the work (a delivery's creation, a resolution's start), so that
// the work and its lease commit together.
func (q *Queue) Take(w Work) *Lease { return &Lease{Work: w, q: q} }

// Hold takes the lease in tx: it creates the row held by this holder, or
// takes it over when no live holder holds it (ErrHeld otherwise).
func (l *Lease) Hold(ctx context.Context, tx *sql.Tx) error {
	q := l.q
	err := tx.QueryRowContext(ctx, q.db.Rebind(`INSERT INTO `+q.table+` AS w (id, kind, subject, trace, holder, token, lease_until, run_after, attempts)
		VALUES (?, ?, ?, ?, ?, 1, `+q.now+` + ?, 0, 1)
		ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, subject = excluded.subject, trace = excluded.trace,
			holder = excluded.holder, token = w.token + 1, lease_until = excluded.lease_until, attempts = w.attempts + 1
		WHERE w.lease_until < `+q.now+`
		RETURNING token, attempts`), l.ID, l.Kind, l.Subject, l.Trace, q.holder, q.ttl.Microseconds()).Scan(&l.Token, &l.Attempt)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", l.ID, ErrHeld)
	}
	if err != nil {
		return fmt.Errorf("take the lease on %s: %w", l.ID, err)
	}
	return nil
}

const returning = ` RETURNING id, kind, subject, trace, token, attempts`

func (q *Queue) scan(row *sql.Row) (*Lease, error) {
	l := &Lease{q: q}
	err := row.Scan(&l.ID, &l.Kind, &l.Subject, &l.Trace, &l.Token, &l.Attempt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim work: %w", err)
	}
	return l, nil
}

// Claim takes the next due work that nobody holds or whose holder stopped
// keeping it, answering nil when there is none.
func (q *Queue) Claim(ctx context.Context) (*Lease, error) {
	stmt := `UPDATE ` + q.table + ` SET holder = ?, token = token + 1, lease_until = ` + q.now + ` + ?, attempts = attempts + 1
		WHERE id = (SELECT id FROM ` + q.table + ` WHERE lease_until < ` + q.now + ` AND run_after <= ` + q.now + `
			ORDER BY run_after, id LIMIT 1` + q.lock + `)` + returning
	return q.scan(q.db.QueryRowContext(ctx, q.db.Rebind(stmt), q.holder, q.ttl.Microseconds()))
}

// ClaimOwn takes all the work held in this holder's name, whatever its
// leases: called once as the instance starts, before it runs anything, so
// that the work it held when it stopped need not wait for its leases to
// run out.
func (q *Queue) ClaimOwn(ctx context.Context) ([]*Lease, error) {
	rows, err := q.db.QueryContext(ctx, q.db.Rebind(`UPDATE `+q.table+` SET token = token + 1, lease_until = `+q.now+` + ?, attempts = attempts + 1
		WHERE holder = ? AND lease_until > 0`+returning), q.ttl.Microseconds(), q.holder)
	if err != nil {
		return nil, fmt.Errorf("claim own work: %w", err)
	}
	defer rows.Close()
	var out []*Lease
	for rows.Next() {
		l := &Lease{q: q}
		if err := rows.Scan(&l.ID, &l.Kind, &l.Subject, &l.Trace, &l.Token, &l.Attempt); err != nil {
			return nil, fmt.Errorf("claim own work: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// Add adds work nobody holds, due at once, unless work of that id exists:
// a periodic task (its holder frees it with Again until its next run).
func (q *Queue) Add(ctx context.Context, id, kind string) error {
	return q.AddAfter(ctx, id, kind, 0)
}

// AddAfter is Add with the work due d from now: a periodic task whose
// first run waits a period.
func (q *Queue) AddAfter(ctx context.Context, id, kind string, d time.Duration) error {
	if _, err := q.db.ExecContext(ctx, q.db.Rebind(`INSERT INTO `+q.table+` (id, kind, run_after) VALUES (?, ?, `+q.now+` + ?) ON CONFLICT (id) DO NOTHING`),
		id, kind, d.Microseconds()); err != nil {
		return fmt.Errorf("add work %s: %w", id, err)
	}
	return nil
}

// Keep answers ctx fenced by the lease, and cancelled (with ErrLost as
// cause) when the lease is lost; a heartbeat extends it every third of
// its length until stop is called. Every transaction opened under the
// answered context checks the token first.
func (l *Lease) Keep(ctx context.Context) (_ context.Context, stop func()) {
	ctx = sqlstore.WithGuard(ctx, l.fence)
	ctx, cancel := context.WithCancelCause(ctx)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(l.q.ttl / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := l.extend(ctx); errors.Is(err, ErrLost) {
				cancel(err)
				return
			}
			// Another error (the database unreachable for a moment) is
			// tried again at the next beat; the lease runs out meanwhile
			// if it lasts, and the fence then refuses every write.
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			close(done)
			<-finished
			cancel(nil)
		})
	}
}

func (l *Lease) extend(ctx context.Context) error {
	res, err := l.q.db.ExecContext(ctx, l.q.db.Rebind(`UPDATE `+l.q.table+` SET lease_until = `+l.q.now+` + ? WHERE id = ? AND token = ?`),
		l.q.ttl.Microseconds(), l.ID, l.Token)
	if err != nil {
		return fmt.Errorf("keep the lease on %s: %w", l.ID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%s (token %d): %w", l.ID, l.Token, ErrLost)
	}
	return nil
}

// fence refuses a transaction of a holder whose token is no longer the
// row's. On PostgreSQL the row is locked FOR SHARE until the transaction
// ends, so that no claim can raise the token between the check and the
// commit.
func (l *Lease) fence(ctx context.Context, tx *sql.Tx) error {
	q := `SELECT token FROM ` + l.q.table + ` WHERE id = ?`
	if l.q.db.Dialect == sqlstore.Postgres {
		q += ` FOR SHARE`
	}
	var token int64
	err := tx.QueryRowContext(ctx, l.q.db.Rebind(q), l.ID).Scan(&token)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && token != l.Token) {
		return fmt.Errorf("%s (token %d, now %d): %w", l.ID, l.Token, token, ErrLost)
	}
	if err != nil {
		return fmt.Errorf("check the lease on %s: %w", l.ID, err)
	}
	return nil
}

// Done ends the work: its row goes, if the lease is still held.
func (l *Lease) Done(ctx context.Context) error {
	return l.end(ctx, `DELETE FROM `+l.q.table+` WHERE id = ? AND token = ?`, l.ID, l.Token)
}

// Ending is Done in tx, the transaction that settles the work (a
// delivery's outcome): the work and its end commit together, and the
// holder need not end it after.
func (l *Lease) Ending(ctx context.Context, tx *sql.Tx) error {
	res, err := tx.ExecContext(ctx, l.q.db.Rebind(`DELETE FROM `+l.q.table+` WHERE id = ? AND token = ?`), l.ID, l.Token)
	if err != nil {
		return fmt.Errorf("end %s: %w", l.ID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%s (token %d): %w", l.ID, l.Token, ErrLost)
	}
	return nil
}

// Again frees the work to be claimed again after d, by any holder.
func (l *Lease) Again(ctx context.Context, d time.Duration) error {
	return l.end(ctx, `UPDATE `+l.q.table+` SET holder = '', lease_until = 0, run_after = `+l.q.now+` + ? WHERE id = ? AND token = ?`,
		d.Microseconds(), l.ID, l.Token)
}

func (l *Lease) end(ctx context.Context, stmt string, args ...any) error {
	res, err := l.q.db.ExecContext(context.WithoutCancel(ctx), l.q.db.Rebind(stmt), args...)
	if err != nil {
		return fmt.Errorf("release %s: %w", l.ID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%s (token %d): %w", l.ID, l.Token, ErrLost)
	}
	return nil
}
