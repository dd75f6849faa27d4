package delivery

import (
	"context"
	"fmt"
	"slices"
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

	// running bounds the streams past their first smallInput bytes.
	running *runQueue
}

func newAdmission(c Config) *admission {
	return &admission{
		maxStreams: c.MaxStreams, maxTenantStreams: c.MaxTenantStreams,
		budgetBytes: c.ReceiveBudget, tenantBudget: c.tenantBudget(), budgetWait: c.BudgetWait,
		byTenant: map[string]int{}, free: c.ReceiveBudget, heldBy: map[string]int64{}, changed: make(chan struct{}),
		running: newRunQueue(c.MaxRunning, c.MaxTenantRunning),
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

	mu    sync.Mutex
	taken int64  // bytes Acquire took, all together
	slot  func() // gives the running slot back; nil until taken
	// park, when set, gives back the part buffers the delivery holds
	// before it waits for a running slot.
	park func()
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

// Acquire implements arrowingest.Budget. Past its first smallInput
// bytes, a stream waits for a running slot first.
func (b *streamBudget) Acquire(n int64) error {
	if err := b.run(n); err != nil {
		return err
	}
	return b.a.take(b.ctx, b.tenant, n)
}

// run takes a running slot for the stream once it has taken more than
// smallInput bytes; a running stream whose tenant holds two or more slots
// more than a tenant with a stream waiting gives its slot up (at the next
// message or body it takes budget for) and waits again: a tenant's thirty
// deliveries do not keep another's one waiting until one of them ends.
func (b *streamBudget) run(n int64) error {
	b.mu.Lock()
	b.taken += n
	need := b.slot == nil && b.taken > smallInput
	var yield func()
	if b.slot != nil && b.a.running.unfair(b.tenant) {
		yield, b.slot = b.slot, nil
		need = true
	}
	park := b.park
	b.mu.Unlock()
	if yield != nil {
		yield()
		b.a.running.yielded.Add(1)
	}
	if !need {
		return nil
	}
	if park != nil {
		park()
	}
	release, err := b.a.running.acquire(b.ctx, b.tenant)
	if err != nil {
		return &streamBroke{err}
	}
	b.mu.Lock()
	b.slot = release
	b.mu.Unlock()
	return nil
}

// end gives back the stream's running slot: its input is read.
func (b *streamBudget) end() {
	b.mu.Lock()
	release := b.slot
	b.slot = nil
	b.mu.Unlock()
	if release != nil {
		release()
	}
}

// TryAcquire takes n bytes if they are free now, without waiting.
func (b *streamBudget) TryAcquire(n int64) bool { return b.a.tryTake(b.tenant, n) }

// Release implements arrowingest.Budget.
func (b *streamBudget) Release(n int64) { b.a.give(b.tenant, n) }

// smallInput is how many bytes a stream takes of the receive budget
// before it needs a running slot: a small delivery (an audience export
// sent every few minutes) never waits for one, and what the streams
// waiting for a slot hold stays small beside the budget.
const smallInput = 1 << 20

// runQueue bounds the streams that run past their first bytes, in all and
// per tenant (#26). Without it, a tenant's many deliveries each gather a
// Parquet row group and take part buffers until its share of the receive
// budget and of the pool are held by deliveries that all wait for more of
// them, and none moves until --budget-wait interrupts one; and the
// process holds a row group per stream. Bounded, the running deliveries
// fit their shares (Config.rowGroupBytes), and the others wait holding
// little. A freed slot goes to the waiting tenant with the fewest running,
// first come first served within a tenant: a tenant sending one delivery
// beside another sending thirty gets the next slot.
type runQueue struct {
	max, tenantMax int
	yielded        atomic.Int64 // slots given up to a tenant running fewer

	mu      sync.Mutex
	total   int
	running map[string]int
	waiting []*runWaiter
	waited  time.Duration
}

type runWaiter struct {
	tenant string
	since  time.Time
	ready  chan struct{} // closed when granted
}

func newRunQueue(maxRunning, tenantMax int) *runQueue {
	return &runQueue{max: max(1, maxRunning), tenantMax: max(1, min(tenantMax, maxRunning)), running: map[string]int{}}
}

// acquire waits for a running slot for tenant, or for ctx to end.
func (q *runQueue) acquire(ctx context.Context, tenant string) (release func(), err error) {
	w := &runWaiter{tenant: tenant, since: time.Now(), ready: make(chan struct{})}
	q.mu.Lock()
	q.waiting = append(q.waiting, w)
	q.grant()
	q.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			q.total--
			if q.running[tenant]--; q.running[tenant] <= 0 {
				delete(q.running, tenant)
			}
			q.grant()
		})
	}
	select {
	case <-w.ready:
		return release, nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	select {
	case <-w.ready: // granted meanwhile
		q.mu.Unlock()
		release()
	default:
		q.waiting = slices.DeleteFunc(q.waiting, func(x *runWaiter) bool { return x == w })
		q.waited += time.Since(w.since)
		q.mu.Unlock()
	}
	return nil, ctx.Err()
}

// grant gives free slots to waiters: the tenant with the fewest running
// first, then the longest waiting. Called with mu held.
func (q *runQueue) grant() {
	for q.total < q.max {
		best := -1
		for i, w := range q.waiting {
			n := q.running[w.tenant]
			if n >= q.tenantMax {
				continue
			}
			if best < 0 || n < q.running[q.waiting[best].tenant] {
				best = i
			}
		}
		if best < 0 {
			return
		}
		w := q.waiting[best]
		q.waiting = slices.Delete(q.waiting, best, best+1)
		q.running[w.tenant]++
		q.total++
		q.waited += time.Since(w.since)
		close(w.ready)
	}
}

// unfair reports whether a stream of tenant should give its slot up: a
// stream of another tenant waits whose tenant runs at least two fewer.
func (q *runQueue) unfair(tenant string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	mine := q.running[tenant]
	if mine < 2 {
		return false
	}
	for _, w := range q.waiting {
		if w.tenant != tenant && q.running[w.tenant]+2 <= mine {
			return true
		}
	}
	return false
}

// Waited answers the time streams spent waiting for running slots, all
// together.
func (q *runQueue) Waited() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waited
}

// Running answers the slots taken and the streams waiting for one.
func (q *runQueue) Running() (running, waiting int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.total, len(q.waiting)
}

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

// onStall has the delivery park what it holds (its part buffers, their
// bytes kept aside) once its caller stalls, the stream's budget holding
// the bytes; and before it waits for a running slot, when the bytes are
// at most a small delivery's output.
func (u *streamUse) onStall(park func(take func(int64) bool, give func(int64))) {
	if u.budget == nil {
		return
	}
	if u.pace != nil {
		u.pace.stalled = func() { park(u.budget.TryAcquire, u.budget.Release) }
	}
	u.budget.mu.Lock()
	u.budget.park = func() { park(nil, nil) }
	u.budget.mu.Unlock()
}

// end gives back what the stream holds past its handler: its running
// slot.
func (u *streamUse) end() {
	if u.budget != nil {
		u.budget.end()
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
