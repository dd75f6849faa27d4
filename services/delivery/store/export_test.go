package store

import (
	"context"
	"database/sql"
	"strings"

	"github.com/sluicehq/sluice/pkg/sqlstore"
)

// HeldStagingPlan answers the engine's plan for HeldStaging's query, with
// PostgreSQL told to avoid a sequential scan where any index serves (its
// planner would read a table of a few rows whole).
func HeldStagingPlan(ctx context.Context, s *Store) (string, error) {
	var plan []string
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		explain := "EXPLAIN QUERY PLAN "
		if s.db.Dialect == sqlstore.Postgres {
			if _, err := tx.ExecContext(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
				return err
			}
			explain = "EXPLAIN "
		}
		rows, err := tx.QueryContext(ctx, explain+s.db.Rebind(heldStagingQuery), len("tenants/acme/"), "tenants/acme/")
		if err != nil {
			return err
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return err
			}
			for _, v := range vals {
				switch v := v.(type) {
				case string:
					plan = append(plan, v)
				case []byte:
					plan = append(plan, string(v))
				}
			}
		}
		return rows.Err()
	})
	return strings.Join(plan, "\n"), err
}
