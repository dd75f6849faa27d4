package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
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
