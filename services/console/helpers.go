package console

import (
	"context"
	"strconv"
	"time"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func trim(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

func contextWithTimeout(q *request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(q.ctx(), d)
}
