package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"google.golang.org/grpc"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
)

// endless sends one batch again and again until stop is closed, counting
// each into sent.
type endless struct {
	rec  arrow.RecordBatch
	stop <-chan struct{}
	sent *atomic.Int64
}

func (e *endless) Schema() *arrow.Schema { return e.rec.Schema() }
func (e *endless) Retain()               {}
func (e *endless) Release()              {}
func (e *endless) Err() error            { return nil }
func (e *endless) Next() bool {
	select {
	case <-e.stop:
		return false
	default:
		e.sent.Add(1)
		return true
	}
}
func (e *endless) RecordBatch() arrow.RecordBatch { return e.rec }

// Record answers the current batch.
//
// Deprecated: use RecordBatch.
func (e *endless) Record() arrow.RecordBatch { return e.rec }

// A tenant sending as many deliveries as it may, all at once and without
// end, does not starve another's: the other's delivery succeeds while every
// one of the busy tenant's streams is still open and still sending.
// Asserted by progress, not by time.
func TestABusyTenantDoesNotStarveAnother(t *testing.T) {
	e := startDelivering(t, nil)
	ctx := context.Background()
	busy := e.r.token("busy", auth.PolicyAdministrator)
	const busyParent = "tenants/busy/environments/production"
	cred, err := credentialv1.NewCredentialServiceClient(e.r.conns["credential"]).CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: busyParent, CredentialId: "minio",
		Credential: &credentialv1.Credential{Bucket: e.bucket, Region: e.m.Region, Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: e.key, SecretAccessKey: e.secret}}}}, busy)
	if err != nil {
		t.Fatal(err)
	}
	busyDest, err := e.dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: busyParent, DestinationId: "flood",
		Destination: &destinationv1.Destination{Credential: cred.GetName(), Prefix: "flood/", Format: csvFormat()}}, busy)
	if err != nil {
		t.Fatal(err)
	}
	quiet := e.destination(t, "quiet", &destinationv1.Destination{Format: csvFormat()})

	streams := defaultServeConfig().Delivery.MaxTenantStreams // all the busy tenant may open
	stop := make(chan struct{})
	var (
		sent, ended atomic.Int64
		wg          sync.WaitGroup
		errs        = make(chan error, streams)
	)
	for i := range streams {
		// A batch of each stream's own: arrow-go's dictionary arrays fill
		// their dictionary lazily, so one batch is not for sharing between
		// writers.
		batch := customerBatches(t, 2000, 2000)[0]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ended.Add(1)
			_, err := deliverclient.Deliver(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: busyDest.GetName(), OutputName: "flood-" + string(rune('a'+i))},
				&endless{rec: batch, stop: stop, sent: &sent}, deliverclient.Options{CallOptions: []grpc.CallOption{busy}})
			errs <- err
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	// Every busy stream is sending.
	for sent.Load() < int64(streams)*4 {
		if ended.Load() > 0 {
			t.Fatalf("a busy stream ended early: %v", <-errs)
		}
		pause()
	}
	before := sent.Load()
	d, err := e.deliver(ctx, quiet.GetName(), reader(t, customerBatches(t, 20_000, 2000)), e.admin, nil)
	if err != nil {
		t.Fatalf("the quiet tenant's delivery beside the busy one: %v", err)
	}
	if d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED || d.GetProgress().GetRows() != 20_000 {
		t.Fatalf("the quiet tenant's delivery: %v", d)
	}
	if n := ended.Load(); n != 0 {
		t.Fatalf("%d of the busy tenant's streams ended before the quiet one's delivery did", n)
	}
	if sent.Load() == before {
		t.Fatal("the busy tenant made no progress while the quiet one delivered")
	}
	close(stop)
	wg.Wait()
	stop = make(chan struct{}) // closed again by the deferred func
	for range streams {
		if err := <-errs; err != nil {
			t.Fatalf("a busy stream, once it ended: %v", err)
		}
	}
}

func pause() { time.Sleep(10 * time.Millisecond) }

// Many large Parquet deliveries from one tenant, more than its share of the
// receive budget holds row groups for, all finish without one being
// interrupted: the ones past their running slots wait holding little,
// rather than each gathering a row group until the budget is held by
// deliveries that all wait for more of it (#26: with 28 at once, they
// stalled until --budget-wait interrupted them one by one). The files are
// read back whole.
func TestManyLargeDeliveriesFromOneTenantAllFinish(t *testing.T) {
	// The shapes of the load test's, made small: a pool of two buffers
	// (one for the tenant), a 16 MiB share of the receive budget, row
	// groups of 10,000 rows (1.7 MiB); eight deliveries of four row
	// groups each. Without running slots, seven of them gather row groups
	// (24 MiB) waiting for the tenant's one buffer, whose delivery waits
	// for budget.
	const n, rows = 8, 40_000
	e := startDelivering(t, func(c *serveConfig) {
		c.Delivery.PartBuffers = 2
		c.Delivery.Ingest.MaxBatchBytes = 2 << 20
		c.Delivery.ReceiveBudget = 32 << 20
		c.Delivery.MaxStreams = 16
		c.Delivery.BudgetWait = 10 * time.Second // a stall fails the test
	})
	format := &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{RowGroupRows: 10_000}}}
	dest := e.destination(t, "many", &destinationv1.Destination{Format: format})
	ctx := context.Background()
	var wg sync.WaitGroup
	got := make([]*deliveryv1.Delivery, n)
	errs := make([]error, n)
	sent := make([][]arrow.RecordBatch, n)
	for i := range n {
		sent[i] = customerBatches(t, rows, 2000)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rr, err := array.NewRecordReader(sent[i][0].Schema(), sent[i])
			if err != nil {
				errs[i] = err
				return
			}
			got[i], errs[i] = e.deliver(ctx, dest.GetName(), rr, e.admin, &deliveryv1.DeliveryStart{OutputName: fmt.Sprintf("big-%d", i)})
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("delivery %d of %d: %v", i, n, errs[i])
		}
		d := got[i]
		if d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED || len(d.GetObjects()) != 1 {
			t.Fatalf("delivery %d: %v", i, d)
		}
		ids, _, _ := readBack(t, e.checkObject(t, d.GetObjects()[0]), format)
		want := column(sent[i], "customer_id")
		if len(ids) != len(want) || ids[0] != want[0] || ids[len(ids)-1] != want[len(want)-1] {
			t.Fatalf("delivery %d: %d rows read back, want %d", i, len(ids), len(want))
		}
	}
}
