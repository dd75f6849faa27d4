package lease_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sluicehq/sluice/pkg/lease"
	"github.com/sluicehq/sluice/pkg/sqlstore"
	"github.com/sluicehq/sluice/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// open answers a fresh database with the work table and a table of notes
// that holders write under their leases.
func open(t *testing.T, dsn string) *sqlstore.DB {
	t.Helper()
	schema := fmt.Sprintf(lease.Schema, "work") + "\nCREATE TABLE notes (v TEXT NOT NULL);"
	fs := fstest.MapFS{}
	for _, d := range []string{"sqlite", "postgres"} {
		fs[d+"/0001_work.sql"] = &fstest.MapFile{Data: []byte(schema)}
	}
	db, err := sqlstore.Open(context.Background(), dsn, fs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func take(t *testing.T, db *sqlstore.DB, q *lease.Queue, id string) *lease.Lease {
	t.Helper()
	l := q.Take(lease.Work{ID: id, Kind: "test", Subject: "s/" + id})
	if err := db.InTx(context.Background(), func(tx *sql.Tx) error { return l.Hold(context.Background(), tx) }); err != nil {
		t.Fatalf("hold %s: %v", id, err)
	}
	return l
}

// holders answers two holders' queues on db's work, with leases of ttl.
func holders(db *sqlstore.DB, ttl time.Duration) (a, b *lease.Queue) {
	return lease.New(db, "work", "a", ttl), lease.New(db, "work", "b", ttl)
}

// claimOnceOut claims, for q, work whose holder stopped beating, once its
// lease runs out.
func claimOnceOut(t *testing.T, q *lease.Queue) *lease.Lease {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		next, err := q.Claim(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if next != nil {
			return next
		}
	}
	t.Fatal("the lease never ran out")
	return nil
}

func note(ctx context.Context, db *sqlstore.DB, v string) error {
	return db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, db.Rebind(`INSERT INTO notes (v) VALUES (?)`), v)
		return err
	})
}

func notes(t *testing.T, db *sqlstore.DB) int {
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM notes`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLeases(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("HeldWorkIsNotClaimed", func(t *testing.T) { heldWorkIsNotClaimed(t, open(t, b.DSN(t))) })
			t.Run("ASlowHolderIsFenced", func(t *testing.T) { aSlowHolderIsFenced(t, open(t, b.DSN(t))) })
			t.Run("TheHeartbeatKeepsIt", func(t *testing.T) { theHeartbeatKeepsIt(t, open(t, b.DSN(t))) })
			t.Run("EachWorkIsClaimedOnce", func(t *testing.T) { eachWorkIsClaimedOnce(t, open(t, b.DSN(t))) })
			t.Run("DoneAgainAddAndOwn", func(t *testing.T) { doneAgainAddAndOwn(t, open(t, b.DSN(t))) })
			t.Run("EndingCommitsWithTheWork", func(t *testing.T) { endingCommitsWithTheWork(t, open(t, b.DSN(t))) })
		})
	}
}

func heldWorkIsNotClaimed(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	a, b := lease.New(db, "work", "a", time.Minute), lease.New(db, "work", "b", time.Minute)
	l := take(t, db, a, "w1")
	if l.Token != 1 || l.Attempt != 1 {
		t.Errorf("first hold: token %d attempt %d, want 1 and 1", l.Token, l.Attempt)
	}
	again := b.Take(lease.Work{ID: "w1", Kind: "test"})
	if err := db.InTx(ctx, func(tx *sql.Tx) error { return again.Hold(ctx, tx) }); !errors.Is(err, lease.ErrHeld) {
		t.Errorf("holding held work: %v, want ErrHeld", err)
	}
	if got, err := b.Claim(ctx); err != nil || got != nil {
		t.Errorf("claim while held: %+v, %v; want nothing", got, err)
	}
	kept, stop := l.Keep(ctx)
	defer stop()
	if err := note(kept, db, "a"); err != nil {
		t.Errorf("the holder's write: %v", err)
	}
}

func aSlowHolderIsFenced(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	ttl := 300 * time.Millisecond
	a, b := lease.New(db, "work", "a", ttl), lease.New(db, "work", "b", ttl)
	slow := take(t, db, a, "w1")
	// a stops beating (a pause, a partition) and b takes the work over.
	next := claimOnceOut(t, b)
	if next.ID != "w1" || next.Kind != "test" || next.Subject != "s/w1" || next.Token != slow.Token+1 || next.Attempt != 2 {
		t.Errorf("claimed %+v, want w1 with token %d, attempt 2", next, slow.Token+1)
	}
	// a comes back: each of its writes is refused, and its heartbeat
	// finds the work gone and cancels it.
	late, stop := slow.Keep(ctx)
	defer stop()
	if err := note(late, db, "late"); !errors.Is(err, lease.ErrLost) {
		t.Errorf("the slow holder's write: %v, want ErrLost", err)
	}
	select {
	case <-late.Done():
		if !errors.Is(context.Cause(late), lease.ErrLost) {
			t.Errorf("cancelled by %v, want ErrLost", context.Cause(late))
		}
	case <-time.After(10 * time.Second):
		t.Error("the slow holder's context was not cancelled")
	}
	if err := slow.Done(ctx); !errors.Is(err, lease.ErrLost) {
		t.Errorf("the slow holder ends the work: %v, want ErrLost", err)
	}
	current, stopNext := next.Keep(ctx)
	defer stopNext()
	if err := note(current, db, "successor"); err != nil {
		t.Errorf("the successor's write: %v", err)
	}
	if n := notes(t, db); n != 1 {
		t.Errorf("%d notes, want the successor's alone", n)
	}
}

func theHeartbeatKeepsIt(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	ttl := 300 * time.Millisecond
	a, b := lease.New(db, "work", "a", ttl), lease.New(db, "work", "b", ttl)
	l := take(t, db, a, "w1")
	kept, stop := l.Keep(ctx)
	for range 10 { // three lease lengths
		time.Sleep(ttl / 3)
		if got, err := b.Claim(ctx); err != nil || got != nil {
			t.Fatalf("claimed a kept lease: %+v, %v", got, err)
		}
	}
	if err := note(kept, db, "a"); err != nil {
		t.Errorf("write under a kept lease: %v", err)
	}
	stop()
	if kept.Err() == nil || context.Cause(kept) != context.Canceled {
		t.Errorf("after stop: %v, want plain cancellation", context.Cause(kept))
	}
}

func eachWorkIsClaimedOnce(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	const works, holders = 40, 4
	for i := range works {
		if err := lease.New(db, "work", "", time.Minute).Add(ctx, fmt.Sprintf("w%02d", i), "test"); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu      sync.Mutex
		claimed = map[string]string{}
		wg      sync.WaitGroup
	)
	for h := range holders {
		q := lease.New(db, "work", fmt.Sprintf("h%d", h), time.Minute)
		wg.Go(func() {
			for {
				l, err := q.Claim(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if l == nil {
					return
				}
				mu.Lock()
				if prev, ok := claimed[l.ID]; ok {
					t.Errorf("%s claimed by %s and again by h%d", l.ID, prev, h)
				}
				claimed[l.ID] = fmt.Sprintf("h%d", h)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != works {
		t.Errorf("%d of %d works claimed", len(claimed), works)
	}
}

func doneAgainAddAndOwn(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	a, b := lease.New(db, "work", "a", time.Minute), lease.New(db, "work", "b", time.Minute)
	if err := take(t, db, a, "w1").Done(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Claim(ctx); got != nil {
		t.Errorf("done work claimed: %+v", got)
	}
	// A periodic task: added once, due at once, then again after a while.
	for range 2 {
		if err := a.Add(ctx, "sweep", "sweep"); err != nil {
			t.Fatal(err)
		}
	}
	sweep, err := b.Claim(ctx)
	if err != nil || sweep == nil || sweep.ID != "sweep" || sweep.Kind != "sweep" {
		t.Fatalf("claim the periodic task: %+v, %v", sweep, err)
	}
	if err := sweep.Again(ctx, 400*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Claim(ctx); got != nil {
		t.Errorf("claimed before it was due: %+v", got)
	}
	time.Sleep(500 * time.Millisecond)
	due, err := a.Claim(ctx)
	if err != nil || due == nil || due.ID != "sweep" {
		t.Fatalf("due again: %+v, %v", due, err)
	}
	if err := due.Again(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	// An instance that starts again takes back what it held at once.
	mine := take(t, db, a, "w2")
	if got, _ := b.ClaimOwn(ctx); len(got) != 0 {
		t.Errorf("b took a's work as its own: %+v", got)
	}
	own, err := a.ClaimOwn(ctx)
	if err != nil || len(own) != 1 || own[0].ID != "w2" || own[0].Token != mine.Token+1 {
		t.Errorf("a's own work after a restart: %+v, %v", own, err)
	}
}

// endingCommitsWithTheWork: Ending removes the work's row in the holder's
// own (fenced) transaction, with what the transaction writes; a holder
// whose lease was taken over fails it whole, writing nothing.
func endingCommitsWithTheWork(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	a, b := holders(db, 300*time.Millisecond)
	l := take(t, db, a, "w1")
	kept, stop := l.Keep(ctx)
	err := db.InTx(kept, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(kept, db.Rebind(`INSERT INTO notes (v) VALUES (?)`), "outcome"); err != nil {
			return err
		}
		return l.Ending(kept, tx)
	})
	stop()
	if err != nil {
		t.Fatalf("the settling transaction: %v", err)
	}
	var rows int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM work`).Scan(&rows); err != nil || rows != 0 || notes(t, db) != 1 {
		t.Fatalf("after Ending: %d work rows (%v) and %d notes, want 0 and 1", rows, err, notes(t, db))
	}
	if got, err := b.Claim(ctx); err != nil || got != nil {
		t.Fatalf("ended work claimed: %+v, %v", got, err)
	}

	// A holder that lost its lease: the whole transaction is refused.
	slow := take(t, db, a, "w2")
	claimOnceOut(t, b)
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, db.Rebind(`INSERT INTO notes (v) VALUES (?)`), "late"); err != nil {
			return err
		}
		return slow.Ending(ctx, tx)
	})
	if !errors.Is(err, lease.ErrLost) || notes(t, db) != 1 {
		t.Fatalf("a lost holder's Ending: %v, %d notes; want ErrLost and nothing written", err, notes(t, db))
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM work`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("the successor's work: %d rows (%v), want 1", rows, err)
	}
}
