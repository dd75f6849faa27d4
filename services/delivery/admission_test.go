package delivery

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/auth"
)

func as(tenant string) context.Context {
	return auth.WithCaller(context.Background(), &auth.Caller{Subject: "u@" + tenant, Tenant: tenant})
}

func refusalOf(err error) (codes.Code, errorsv1.ErrorReason, time.Duration) {
	var e *apierror.Error
	if !errors.As(err, &e) {
		return codes.Unknown, 0, 0
	}
	return e.Code, e.Reason, e.RetryAfter
}

// Streams are capped per tenant and in all; a refusal says which limit,
// with a delay to retry after; a slot given back is taken again.
func TestAdmissionCapsStreams(t *testing.T) {
	a := newAdmission(Config{MaxStreams: 3, MaxTenantStreams: 2, ReceiveBudget: 1 << 20, BudgetWait: time.Second})
	var releases []func()
	for _, step := range []struct {
		tenant string
		limit  string // "" admitted
	}{{"a", ""}, {"a", ""}, {"a", "tenant_streams"}, {"b", ""}, {"b", "streams"}, {"c", "streams"}} {
		release, err := a.admit(as(step.tenant))
		if step.limit == "" {
			if err != nil {
				t.Fatalf("%s: %v", step.tenant, err)
			}
			releases = append(releases, release)
			continue
		}
		code, reason, retry := refusalOf(err)
		var e *apierror.Error
		errors.As(err, &e)
		if code != codes.ResourceExhausted || reason != errorsv1.ErrorReason_ERROR_REASON_TOO_MANY_STREAMS || retry <= 0 || e.Metadata["limit"] != step.limit {
			t.Fatalf("%s: %v, want TOO_MANY_STREAMS for %s with RetryInfo", step.tenant, err, step.limit)
		}
	}
	releases[0]()
	releases[0]() // twice: once counts
	if _, err := a.admit(as("c")); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := a.admit(as("c")); err == nil {
		t.Fatal("a release given back twice freed two slots")
	}
}

// One tenant takes at most its share of the budget; another tenant's small
// request is served at once while the first tenant's large one waits; a
// wait past BudgetWait is RECEIVE_BUDGET_SPENT, resumable.
func TestReceiveBudgetSharesBetweenTenants(t *testing.T) {
	a := newAdmission(Config{MaxStreams: 10, MaxTenantStreams: 10, ReceiveBudget: 100, BudgetWait: 300 * time.Millisecond, Ingest: ingestLimitsFor(40)})
	if a.tenantBudget != 50 {
		t.Fatalf("tenant share %d, want half of 100", a.tenantBudget)
	}
	evil := a.forStream(as("evil"))
	if err := evil.Acquire(45); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- evil.Acquire(30) }() // past the tenant's share: waits
	other := a.forStream(as("other"))
	if err := other.Acquire(20); err != nil {
		t.Fatalf("another tenant's small request beside a waiting large one: %v", err)
	}
	err := <-waited
	var broke *streamBroke
	if code, reason, retry := refusalOf(err); !errors.As(err, &broke) || code != codes.ResourceExhausted || reason != errorsv1.ErrorReason_ERROR_REASON_RECEIVE_BUDGET_SPENT || retry <= 0 {
		t.Fatalf("a wait past BudgetWait: %v, want RECEIVE_BUDGET_SPENT, resumable", err)
	}
	// Given back, the bytes serve a waiter at once.
	go func() { waited <- evil.Acquire(30) }()
	time.Sleep(20 * time.Millisecond)
	evil.Release(45)
	if err := <-waited; err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if a.held.Load() != 50 {
		t.Fatalf("held %d bytes, want 50", a.held.Load())
	}
	if err := other.Acquire(51); err == nil {
		t.Fatal("more than a tenant's share was granted")
	}
}

func ingestLimitsFor(batch int64) (l arrowingest.Limits) {
	l.MaxBatchBytes = batch - MaxMessageBytes // the share's floor: a batch and a message
	return l
}

// The idle timeout counts only time spent waiting for the caller; a
// stream below the minimum rate over a window is interrupted.
func TestPacer(t *testing.T) {
	p := &pacer{idle: 100 * time.Millisecond, minRate: 1000}
	block := make(chan struct{})
	recv := func() (int, error) { <-block; return 0, nil }
	_, err := recvPaced(p, recv, func(int) int { return 0 })
	if _, reason, _ := refusalOf(err); reason != errorsv1.ErrorReason_ERROR_REASON_STREAM_IDLE {
		t.Fatalf("a stream that sent nothing: %v, want STREAM_IDLE", err)
	}
	close(block)
	// 10 bytes a message, each after 30 ms: 333 bytes a second.
	p = &pacer{idle: 100 * time.Millisecond, minRate: 1000}
	slow := func() (int, error) { time.Sleep(30 * time.Millisecond); return 10, nil }
	for range 10 {
		if _, err = recvPaced(p, slow, func(n int) int { return n }); err != nil {
			break
		}
	}
	if _, reason, _ := refusalOf(err); reason != errorsv1.ErrorReason_ERROR_REASON_STREAM_IDLE {
		t.Fatalf("a stream under the minimum rate: %v, want STREAM_IDLE", err)
	}
	// Time the service spends between messages is not the caller's.
	p = &pacer{idle: 100 * time.Millisecond, minRate: 1000}
	fast := func() (int, error) { return 1000, nil }
	for range 5 {
		if _, err := recvPaced(p, fast, func(n int) int { return n }); err != nil {
			t.Fatalf("a fast stream whose service is slow: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Running slots are capped in all and per tenant; a freed slot goes to the
// waiting tenant with the fewest running, though another waited longer; a
// waiter that gives up leaves the queue, and a slot given back twice
// counts once.
func TestRunQueueGivesSlotsToTheLeastRunningTenant(t *testing.T) {
	q := newRunQueue(3, 2)
	ctx := context.Background()
	type got struct {
		tenant  string
		release func()
	}
	granted := make(chan got, 10)
	start := func(tenant string) {
		go func() {
			release, err := q.acquire(ctx, tenant)
			if err != nil {
				t.Errorf("%s: %v", tenant, err)
				return
			}
			granted <- got{tenant, release}
		}()
	}
	next := func() got {
		t.Helper()
		select {
		case g := <-granted:
			return g
		case <-time.After(10 * time.Second):
			t.Fatal("no slot was granted")
			return got{}
		}
	}
	waitFor := func(waiting int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			if _, w := q.Running(); w == waiting {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("never %d waiting", waiting)
			}
		}
	}
	start("busy")
	start("busy")
	a1, a2 := next(), next()
	start("busy") // over the tenant's two: waits though a slot is free
	waitFor(1)
	if n, _ := q.Running(); n != 2 {
		t.Fatalf("%d running, want 2", n)
	}
	start("quiet")
	b := next()
	if b.tenant != "quiet" {
		t.Fatalf("the free slot went to %s", b.tenant)
	}
	start("other")
	waitFor(2) // busy's third and other's first, in that order
	a1.release()
	if g := next(); g.tenant != "other" {
		t.Fatalf("the freed slot went to %s, want the tenant with none running", g.tenant)
	} else {
		defer g.release()
	}
	a2.release()
	a2.release() // twice: once counts
	if g := next(); g.tenant != "busy" {
		t.Fatalf("then to %s, want busy", g.tenant)
	} else {
		defer g.release()
	}
	select {
	case g := <-granted:
		t.Fatalf("a slot given back twice freed two: %s got one", g.tenant)
	case <-time.After(50 * time.Millisecond):
	}
	// A waiter that gives up leaves the queue.
	cctx, cancel := context.WithCancel(ctx)
	errs := make(chan error, 1)
	go func() {
		_, err := q.acquire(cctx, "late")
		errs <- err
	}()
	waitFor(1)
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled wait: %v", err)
	}
	waitFor(0)
	b.release()
	start("again")
	if g := next(); g.tenant != "again" {
		t.Fatalf("got %s", g.tenant)
	}
	if q.Waited() <= 0 {
		t.Fatal("no wait counted")
	}
}

// A stream of a tenant running two more than a tenant with a stream
// waiting gives its slot up at its next batch and waits again; with the
// counts closer, nobody gives way.
func TestRunningSlotsAreGivenUpToAWaitingTenant(t *testing.T) {
	a := newAdmission(Config{MaxStreams: 10, MaxTenantStreams: 10, MaxRunning: 3, MaxTenantRunning: 2, ReceiveBudget: 1 << 30, BudgetWait: 10 * time.Second})
	running := func(b *streamBudget) {
		t.Helper()
		if err := b.Acquire(smallInput + 1); err != nil {
			t.Fatal(err)
		}
	}
	heavy1, heavy2, other := a.forStream(as("heavy")), a.forStream(as("heavy")), a.forStream(as("other"))
	running(heavy1)
	running(heavy2)
	running(other)
	parked := false
	heavy1.park = func() { parked = true }
	// Two against one, nobody waiting: heavy keeps its slots.
	running(heavy1)
	if a.running.yielded.Load() != 0 {
		t.Fatal("a slot was given up with nobody waiting")
	}
	// A third tenant waits with none running: heavy gives one up.
	light := a.forStream(as("light"))
	lightRuns := make(chan error, 1)
	go func() { lightRuns <- light.Acquire(smallInput + 1) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, w := a.running.Running(); w == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the light stream never waited")
		}
	}
	// other runs one: two against it is not enough to give way.
	running(other)
	if a.running.yielded.Load() != 0 {
		t.Fatal("other gave its slot up, running only one")
	}
	heavy1Runs := make(chan error, 1)
	go func() { heavy1Runs <- heavy1.Acquire(1 << 10) }()
	select {
	case err := <-lightRuns:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the light stream never got the slot heavy gave up")
	}
	if got := a.running.yielded.Load(); got != 1 {
		t.Errorf("%d slots given up, want 1", got)
	}
	if n, _ := a.running.Running(); n != 3 {
		t.Errorf("%d running, want 3", n)
	}
	// heavy's stream waits until a slot is free again, and gets it back.
	select {
	case err := <-heavy1Runs:
		t.Fatalf("heavy's stream ran on without a slot (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	light.end()
	if err := <-heavy1Runs; err != nil {
		t.Fatal(err)
	}
	if !parked {
		t.Error("heavy's stream did not park its part buffers before it waited again")
	}
	heavy1.end()
	heavy2.end()
	other.end()
	if n, w := a.running.Running(); n != 0 || w != 0 {
		t.Errorf("%d running and %d waiting once all ended", n, w)
	}
}
