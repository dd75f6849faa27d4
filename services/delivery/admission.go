package delivery

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/auth"
)

// admission bounds what callers' streams may take of the process, so that
// a few idle or hostile clients cannot stop every tenant's deliveries
// (#22): how many streams are open, in all and per tenant, and how many
// bytes all of them hold together (received messages not yet consumed,
// and Arrow message bodies until the batches decoded from them are
// released).
type admission struct {
	maxStreams, maxTenantStreams int
	budgetBytes, tenantBudget    int64
	budgetWait                   time.Duration

	mu       sync.Mutex
	open     int
	byTenant map[string]int   // streams open
	free     int64            // bytes of the budget not taken
	heldBy   map[string]int64 // bytes taken, by tenant
	changed  chan struct{}    // closed when bytes are given back
	held     atomic.Int64     // bytes taken, for the metrics
}

func newAdmission(c Config) *admission {
	return &admission{
		maxStreams: c.MaxStreams, maxTenantStreams: c.MaxTenantStreams,
		budgetBytes: c.ReceiveBudget, tenantBudget: c.tenantBudget(), budgetWait: c.BudgetWait,
		byTenant: map[string]int{}, free: c.ReceiveBudget, heldBy: map[string]int64{}, changed: make(chan struct{}),
	}
}

// streamRetry is how long a refused stream is told to wait: about as long
// as a small delivery takes.
const streamRetry = 2 * time.Second

// admit takes a stream slot for the caller's tenant, or answers
// RESOURCE_EXHAUSTED with RetryInfo when the tenant's or the process's
// streams are all taken. The slot is given back by release.
func (a *admission) admit(ctx context.Context) (release func(), err error) {
	tenant := tenantOf(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	limit, which := 0, ""
	switch {
	case a.open >= a.maxStreams:
		limit, which = a.maxStreams, "streams"
	case a.byTenant[tenant] >= a.maxTenantStreams:
		limit, which = a.maxTenantStreams, "tenant_streams"
	}
	if which != "" {
		e := apierror.New(codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_TOO_MANY_STREAMS,
			fmt.Sprintf("too many deliveries are streaming (%s at most %d): try again shortly", map[string]string{"streams": "in all", "tenant_streams": "for your tenant"}[which], limit)).
			With("limit", which).With("max", strconv.Itoa(limit))
		e.RetryAfter = streamRetry
		return nil, e
	}
	a.open++
	a.byTenant[tenant]++
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			a.open--
			if a.byTenant[tenant]--; a.byTenant[tenant] == 0 {
				delete(a.byTenant, tenant)
			}
		})
	}, nil
}

// budgetSpent is a stream that waited BudgetWait for bytes the others
// held. It is interrupted like a broken stream: the caller resumes it.
func (a *admission) budgetSpent(n int64) error {
	e := apierror.New(codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_RECEIVE_BUDGET_SPENT,
		fmt.Sprintf("the delivery service holds as much received data as it may (%d bytes for all streams, %d for one tenant's) and could not take %d more bytes within %s: resume the stream shortly",
			a.budgetBytes, a.tenantBudget, n, a.budgetWait))
	e.RetryAfter = streamRetry
	return &streamBroke{e}
}

// take takes n bytes of the budget for tenant, waiting at most BudgetWait
// and no longer than ctx. Not first come, first served: a small request
// passes a large one that does not fit yet, so that one tenant's large
// bodies waiting cannot hold up another tenant's small ones; and no
// tenant takes more than its share, so that the others always have room.
func (a *admission) take(ctx context.Context, tenant string, n int64) error {
	if n > a.tenantBudget {
		// More than a tenant's share: no wait would do. MaxBatchBytes and
		// the message limit keep below it (checked at start).
		return a.budgetSpent(n)
	}
	timer := time.NewTimer(a.budgetWait)
	defer timer.Stop()
	for {
		a.mu.Lock()
		if a.free >= n && a.heldBy[tenant]+n <= a.tenantBudget {
			a.free -= n
			a.heldBy[tenant] += n
			a.held.Add(n)
			a.mu.Unlock()
			return nil
		}
		changed := a.changed
		a.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return &streamBroke{ctx.Err()}
		case <-timer.C:
			return a.budgetSpent(n)
		}
	}
}

// tryTake takes n bytes for tenant if they are free now.
func (a *admission) tryTake(tenant string, n int64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.free < n || a.heldBy[tenant]+n > a.tenantBudget {
		return false
	}
	a.free -= n
	a.heldBy[tenant] += n
	a.held.Add(n)
	return true
}

// give gives back n bytes tenant took, waking every waiter.
func (a *admission) give(tenant string, n int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.free += n
	if a.heldBy[tenant] -= n; a.heldBy[tenant] <= 0 {
		delete(a.heldBy, tenant)
	}
	a.held.Add(-n)
	close(a.changed)
	a.changed = make(chan struct{})
}

// streamBudget is the receive budget as one stream takes it.
type streamBudget struct {
	ctx    context.Context
	tenant string
	a      *admission
}

func (a *admission) forStream(ctx context.Context) *streamBudget {
	return &streamBudget{ctx: ctx, tenant: tenantOf(ctx), a: a}
}

func tenantOf(ctx context.Context) string {
	if c, ok := auth.FromContext(ctx); ok {
		return c.Tenant
	}
	return ""
}

// Acquire implements arrowingest.Budget.
func (b *streamBudget) Acquire(n int64) error { return b.a.take(b.ctx, b.tenant, n) }

// TryAcquire takes n bytes if they are free now, without waiting.
func (b *streamBudget) TryAcquire(n int64) bool { return b.a.tryTake(b.tenant, n) }

// Release implements arrowingest.Budget.
func (b *streamBudget) Release(n int64) { b.a.give(b.tenant, n) }

// pacer interrupts a stream that sends nothing for its idle timeout, or
// less than its minimum rate over such a window: a stalled stream must not
// hold a slot, buffers and bytes others need (#22). Interrupted, it is
// resumable like a broken one. Only the time spent waiting for the caller
// counts, never the time the service itself took (waiting for budget or
// part buffers), so that a slow service never blames its caller.
type pacer struct {
	idle    time.Duration // 0: never
	minRate int64         // bytes a second over each idle window; 0: none

	windowWait  time.Duration // waited for the caller in this window
	windowBytes int64
	// stalled, when set, is called once a wait for the caller passes
	// parkAfter: the delivery gives back what others could use meanwhile.
	stalled func()
}

// parkAfter is how long a caller may keep the service waiting before its
// delivery's part buffers are parked: longer than a message's usual gap,
// short beside a bystander's deadline.
const parkAfter = time.Second

func (s *Service) newPacer() *pacer {
	return &pacer{idle: s.cfg.StreamIdleTimeout, minRate: s.cfg.StreamMinRate}
}

// streamIdle is the error of an interrupted stream.
func streamIdle(why string) error {
	return &streamBroke{apierror.New(codes.DeadlineExceeded, errorsv1.ErrorReason_ERROR_REASON_STREAM_IDLE, why+": the stream was interrupted; resume it with the same idempotency key")}
}

// got counts a message of n bytes that took waited to come, answering an
// error when the window it closes fell below the minimum rate.
func (p *pacer) got(n int, waited time.Duration) error {
	p.windowWait += waited
	p.windowBytes += int64(n)
	if p.idle <= 0 || p.minRate <= 0 || p.windowWait < p.idle {
		return nil
	}
	if rate := float64(p.windowBytes) / p.windowWait.Seconds(); rate < float64(p.minRate) {
		return streamIdle(fmt.Sprintf("the stream sent %d bytes in %s, less than the minimum rate of %d bytes a second", p.windowBytes, p.windowWait.Round(time.Second), p.minRate))
	}
	p.windowWait, p.windowBytes = 0, 0
	return nil
}

// recvPaced answers the stream's next message, running recv on a goroutine
// of its own so that a stream that sends nothing for the idle timeout can
// be interrupted (recv returns only when the caller sends or goes; once
// the handler returns, gRPC ends the stream and it does). size tells a
// message's bytes.
func recvPaced[T any](p *pacer, recv func() (T, error), size func(T) int) (T, error) {
	start := time.Now()
	if p == nil || (p.idle <= 0 && p.stalled == nil) {
		m, err := recv()
		if err == nil && p != nil {
			err = p.got(size(m), time.Since(start))
		}
		return m, err
	}
	type result struct {
		m   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := recv()
		ch <- result{m, err}
	}()
	var idle, park <-chan time.Time
	if p.idle > 0 {
		t := time.NewTimer(p.idle)
		defer t.Stop()
		idle = t.C
	}
	if p.stalled != nil {
		t := time.NewTimer(parkAfter)
		defer t.Stop()
		park = t.C
	}
	for {
		select {
		case r := <-ch:
			if r.err != nil {
				return r.m, r.err
			}
			return r.m, p.got(size(r.m), time.Since(start))
		case <-park:
			p.stalled()
			park = nil
		case <-idle:
			var zero T
			return zero, streamIdle(fmt.Sprintf("the stream sent nothing for %s", p.idle))
		}
	}
}

// streamUse is what a caller's stream (Deliver's or DoPut's) takes of the
// process while it is read: its pacer, its share of the receive budget,
// and the message it holds, charged until consumed.
type streamUse struct {
	pace    *pacer
	budget  *streamBudget
	charged int64
}

func (s *Service) streamUse(ctx context.Context) streamUse {
	return streamUse{pace: s.newPacer(), budget: s.admission.forStream(ctx)}
}

// onStall has the delivery park what it holds once its caller stalls.
func (u *streamUse) onStall(park func(*streamBudget)) {
	if u.pace != nil && u.budget != nil {
		u.pace.stalled = func() { park(u.budget) }
	}
}

// receiveBudget answers the budget the stream's Arrow bodies are charged
// to, or nil.
func (u *streamUse) receiveBudget() arrowingest.Budget {
	if u.budget == nil {
		return nil
	}
	return u.budget
}

// charge takes n bytes of the budget for the message just received.
func (u *streamUse) charge(n int64) error {
	if u.budget == nil || n <= 0 {
		return nil
	}
	if err := u.budget.Acquire(n); err != nil {
		return err
	}
	u.charged = n
	return nil
}

// uncharge gives back what the consumed message took.
func (u *streamUse) uncharge() {
	if u.charged > 0 {
		u.budget.Release(u.charged)
		u.charged = 0
	}
}
