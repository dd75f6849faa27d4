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
