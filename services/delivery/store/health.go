package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/pkg/resourcestore"
)

// Health is what the health watcher last found of one subject.
type Health struct {
	// Subject is a destination's name, or `key-age:` and a credential's.
	Subject string
	// Failing is true while its check fails; Reason says why.
	Failing bool
	Reason  string
	// Notification is the warning raised when it started failing.
	Notification string
	// Checks counts the checks made; Checked is the last one's time, by
	// CheckedBy (the replica).
	Checks    int64
	Checked   time.Time
	CheckedBy string
}

// HealthOf answers what was last found of subject; its zero value (not
// failing) when it was never checked.
func (s *Store) HealthOf(ctx context.Context, subject string) (Health, error) {
	h := Health{Subject: subject}
	var (
		failing int
		checked int64
	)
	err := s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT failing, reason, notification, checks, checked, checked_by FROM health WHERE subject = ?`), subject).
		Scan(&failing, &h.Reason, &h.Notification, &h.Checks, &checked, &h.CheckedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return h, nil
	}
	if err != nil {
		return h, fmt.Errorf("health of %s: %w", subject, err)
	}
	h.Failing, h.Checked = failing == 1, time.UnixMicro(checked)
	return h, nil
}

// SettingHealth answers the storing of h, counting one more check, to
// commit with what the check raised or cleared.
func (s *Store) SettingHealth(h Health) resourcestore.Also {
	return func(ctx context.Context, tx *sql.Tx) error {
		failing := 0
		if h.Failing {
			failing = 1
		}
		_, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO health (subject, failing, reason, notification, checks, checked, checked_by)
			VALUES (?, ?, ?, ?, 1, ?, ?)
			ON CONFLICT (subject) DO UPDATE SET failing = excluded.failing, reason = excluded.reason, notification = excluded.notification,
				checks = health.checks + 1, checked = excluded.checked, checked_by = excluded.checked_by`),
			h.Subject, failing, h.Reason, h.Notification, h.Checked.UnixMicro(), h.CheckedBy)
		if err != nil {
			return fmt.Errorf("store the health of %s: %w", h.Subject, err)
		}
		return nil
	}
}

// SetHealth stores h on its own.
func (s *Store) SetHealth(ctx context.Context, h Health) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error { return s.SettingHealth(h)(ctx, tx) })
}

// DestinationsInUse answers the destinations that deliveries were made to
// since since: the ones the health watcher tests.
func (s *Store) DestinationsInUse(ctx context.Context, since time.Time) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT DISTINCT destination FROM deliveries WHERE create_time >= ? AND destination <> '' ORDER BY destination`), since.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("destinations in use: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
