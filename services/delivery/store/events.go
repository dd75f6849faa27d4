package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/resourcestore"
)

// Due answers when an event's next send is due, in Unix microseconds: the
// earliest next attempt of its pending sends, 0 when none is pending.
func Due(e *deliveryv1.Event) int64 {
	var due int64
	for _, s := range e.GetSends() {
		if s.GetState() != deliveryv1.EventSendState_EVENT_SEND_STATE_PENDING {
			continue
		}
		t := s.GetNextAttemptTime().AsTime().UnixMicro()
		if t <= 0 {
			t = 1
		}
		if due == 0 || t < due {
			due = t
		}
	}
	return due
}

// DueEvents answers up to limit events with a send due at now.
func (s *Store) DueEvents(ctx context.Context, now time.Time, limit int) ([]*deliveryv1.Event, error) {
	return s.Events.Find(ctx, limit, "due > 0 AND due <= ?", now.UnixMicro())
}

// NextDue answers when the next send of any event is due; zero when none
// is pending.
func (s *Store) NextDue(ctx context.Context) (time.Time, error) {
	var due sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MIN(due) FROM events WHERE due > 0`).Scan(&due); err != nil {
		return time.Time{}, fmt.Errorf("next event due: %w", err)
	}
	if !due.Valid {
		return time.Time{}, nil
	}
	return time.UnixMicro(due.Int64), nil
}

// SubscribersIn answers, in tx, the subscriptions of parent that are not
// paused and take events of destination (theirs, or every destination's).
func (s *Store) SubscribersIn(ctx context.Context, tx *sql.Tx, parent, destination string) ([]*deliveryv1.Subscription, error) {
	return s.Subscriptions.FindIn(ctx, tx, 1000, "parent = ? AND paused = 0 AND (destination = '' OR destination = ?)", parent, destination)
}

// SettingSecret answers the storing of a subscription's sealed secret, to
// commit with the subscription's own write.
func (s *Store) SettingSecret(name string, sealed []byte) resourcestore.Also {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO subscription_secrets (name, sealed) VALUES (?, ?)
			ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed`), name, sealed)
		if err != nil {
			return fmt.Errorf("store the secret of %s: %w", name, err)
		}
		return nil
	}
}

// ForgettingSecret answers the removal of a subscription's secret.
func (s *Store) ForgettingSecret(name string) resourcestore.Also {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.db.Rebind(`DELETE FROM subscription_secrets WHERE name = ?`), name)
		return err
	}
}

// Secret answers a subscription's sealed secret; nil when it has none.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	var sealed []byte
	err := s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT sealed FROM subscription_secrets WHERE name = ?`), name).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the secret of %s: %w", name, err)
	}
	return sealed, nil
}
