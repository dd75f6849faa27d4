package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// Deliveries driven through random sequences of events on two delivery
// processes sharing one PostgreSQL and S3 staging (#23): streams cut (a
// clean half-close without the end marker, or a cancelled call), S3
// failing a file past the retries, the process running a delivery killed
// mid-upload (and started again), resumes, resolutions (retry-task and
// restart-workflow) and cancels, each through either process. At the end
// every delivery is in a final state or resumable, no work is leased, no
// multipart upload is left, nothing is staged but the resumable ones'
// input, and each SUCCEEDED delivery's objects equal an uninterrupted
// delivery's. SLUICE_LIFECYCLE_SEED replays a run; SLUICE_LIFECYCLE_RUNS
// sets how many deliveries (12).
func TestLifecycleRandomized(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SLUICE_LIFECYCLE_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	runs := 12
	if s := os.Getenv("SLUICE_LIFECYCLE_RUNS"); s != "" {
		runs, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d (SLUICE_LIFECYCLE_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	stagingBucket := testenv.NewBucket(t, m)
	fault := testenv.NewS3Fault(t, m)
	dsn := testenv.NewDatabase(t)
	p := startProcesses(t, m, bucket, localserver.SluiceOptions{
		S3Endpoint: fault.Endpoint, DeliveryReplicas: 2,
		Delivery: []string{"--database", dsn, "--lease-ttl", "2s", "--recover-interval", "250ms",
			"--staging-url", "s3://" + stagingBucket + "/staging", "--s3-attempts", "1", "--transient-retries", "0"},
		DeliveryEnv: []string{"AWS_ACCESS_KEY_ID=" + m.RootUser, "AWS_SECRET_ACCESS_KEY=" + m.RootPassword, "AWS_REGION=" + m.Region},
	})
	ctx := context.Background()
	replicas := []string{"delivery", "delivery-2"}
	delivs := map[string]deliveryv1.DeliveryServiceClient{}
	flows := map[string]deliveryv1.WorkflowServiceClient{}
	for _, r := range replicas {
		cc, err := grpc.NewClient(p.sl.Addrs[r], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		delivs[r], flows[r] = deliveryv1.NewDeliveryServiceClient(cc), deliveryv1.NewWorkflowServiceClient(cc)
	}
	anyReplica := func() string { return replicas[rng.IntN(len(replicas))] }

	recs := customerBatches(t, 6000, 500)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	opts := deliverclient.Options{MessageBytes: 32 << 10, CallOptions: []grpc.CallOption{p.as}}
	split := &destinationv1.Split{MaxRows: 1000}
	whole := p.destination(t, "whole", split)
	want, err := deliverclient.DeliverStream(ctx, p.delivs, &deliveryv1.DeliveryStart{Destination: whole.GetName(), OutputName: "out"}, bytes.NewReader(stream), opts)
	if err != nil {
		t.Fatal(err)
	}
	wantSums := map[string]string{}
	for _, o := range want.GetObjects() {
		wantSums[strings.TrimPrefix(o.GetKey(), whole.GetPrefix())] = o.GetChecksum()
	}

	polls := 0 // not from rng: how often a delivery is polled depends on timing
	get := func(name string) *deliveryv1.Delivery {
		polls++
		d, err := delivs[replicas[polls%len(replicas)]].GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Name: name}, p.as)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	running := func(d *deliveryv1.Delivery) bool {
		s := d.GetState()
		return s == deliveryv1.DeliveryState_DELIVERY_STATE_UPLOADING || s == deliveryv1.DeliveryState_DELIVERY_STATE_RESOLVING ||
			(s == deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING && d.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED)
	}
	// settled waits for a delivery to stop running: its holder settles
	// it, or another replica takes it over.
	settled := func(name string) *deliveryv1.Delivery {
		for range 600 {
			if d := get(name); !running(d) {
				return d
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s still runs after 60 s: %v\ndelivery's log:\n%s\ndelivery-2's log:\n%s", name, get(name), p.sl.Log("delivery"), p.sl.Log("delivery-2"))
		return nil
	}
	// killDuring runs fn against replica r, holding S3's answer to the
	// third file of prefix until r is killed; r is started again after.
	killDuring := func(r, prefix string, fn func() error) {
		fault.Hold(func(q testenv.S3Request) bool {
			return q.Bucket == bucket && strings.HasPrefix(q.Key, prefix+"out_00003") && q.Method == http.MethodPut
		})
		held := fault.Count("held")
		done := make(chan error, 1)
		go func() { done <- fn() }()
		for i := 0; fault.Count("held") == held; i++ {
			select {
			case err := <-done:
				fault.Release()
				t.Logf("  the call ended before S3 was reached: %v", err)
				return
			case <-time.After(50 * time.Millisecond):
			}
			if i == 400 {
				t.Fatalf("S3 was never reached; %s's log:\n%s", r, p.sl.Log(r))
			}
		}
		p.sl.Kill(r)
		fault.Release()
		<-done
		if err := p.sl.Start(r); err != nil {
			t.Fatal(err)
		}
	}

	type tracked struct {
		name, prefix string
	}
	var all []tracked
	for i := range runs {
		id := fmt.Sprintf("r%02d", i)
		dest := p.destination(t, id, split)
		start := &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "out", IdempotencyKey: "key-" + id}
		r := anyReplica()
		var log []string
		say := func(f string, a ...any) { log = append(log, fmt.Sprintf(f, a...)) }
		deliver := func(r string, offset int64, body []byte, cancelAfter bool) error {
			s := proto.Clone(start).(*deliveryv1.DeliveryStart)
			s.ResumeOffset = offset
			callCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			var in io.Reader = bytes.NewReader(body)
			if cancelAfter {
				// The caller cancels after part of the stream, with the
				// call still open.
				in = io.MultiReader(bytes.NewReader(body), &cancelling{cancel: cancel})
			}
			_, err := deliverclient.DeliverStream(callCtx, delivs[r], s, in, opts)
			return err
		}
		var name string
		var firstErr error
		nameOf := func(err error) {
			firstErr = err
			if e := apierror.FromStatus(err); e != nil && e.Metadata["delivery"] != "" {
				name = e.Metadata["delivery"]
			}
		}
		cut := 1 + rng.IntN(len(stream)-1)
		first := rng.IntN(6)
		if f := os.Getenv("SLUICE_LIFECYCLE_FIRST"); f != "" {
			first, _ = strconv.Atoi(f) // one kind of event, to debug it
		}
		switch first {
		case 0:
			say("deliver whole via %s", r)
			if err := deliver(r, 0, stream, false); err != nil {
				t.Fatalf("%s: %v", id, err)
			}
		case 1:
			say("deliver %d of %d bytes, half-closed, via %s", cut, len(stream), r)
			nameOf(deliver(r, 0, stream[:cut], false))
		case 2:
			say("deliver %d of %d bytes, then cancel the call, via %s", cut, len(stream), r)
			nameOf(deliver(r, 0, stream[:cut], true))
		case 3:
			say("deliver with S3 failing the fourth file, via %s", r)
			fault.Fail(testenv.InternalError, -1, func(q testenv.S3Request) bool {
				return q.Bucket == bucket && q.Key == dest.GetPrefix()+"out_00004.csv" && q.Method != http.MethodDelete
			})
			nameOf(deliver(r, 0, stream, false))
			fault.Clear()
		case 5:
			other := replicas[(slicesIndex(replicas, r)+1)%len(replicas)]
			say("deliver via %s and cancel it via %s during the upload", r, other)
			fault.Hold(func(q testenv.S3Request) bool {
				return q.Bucket == bucket && strings.HasPrefix(q.Key, dest.GetPrefix()+"out_00003") && q.Method == http.MethodPut
			})
			held := fault.Count("held")
			done := make(chan error, 1)
			go func() { done <- deliver(r, 0, stream, false) }()
			for i := 0; fault.Count("held") == held && i < 400; i++ {
				time.Sleep(50 * time.Millisecond)
			}
			list, err := p.delivs.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: production, Filter: `destination = "` + dest.GetName() + `"`}, p.as)
			if err != nil || len(list.GetDeliveries()) != 1 {
				t.Fatalf("%s: %v %v", id, list, err)
			}
			name = list.GetDeliveries()[0].GetName()
			got, err := delivs[other].CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: name}, p.as)
			fault.Release()
			if err != nil || got.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_CANCELLED {
				t.Fatalf("%s: cancelled via the other replica: %v %v\n%s's log:\n%s", id, got.GetState(), err, r, p.sl.WholeLog(r))
			}
			if err := <-done; apierror.FromStatus(err).Reason.String() != "ERROR_REASON_CANCELLED" {
				t.Errorf("%s: the caller of a cancelled delivery got %v", id, err)
			}
		case 4:
			say("deliver and kill %s during the upload", r)
			killDuring(r, dest.GetPrefix(), func() error {
				err := deliver(r, 0, stream, false)
				nameOf(err)
				return err
			})
		}
		if name == "" {
			list, err := p.delivs.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: production, Filter: `destination = "` + dest.GetName() + `"`}, p.as)
			if err == nil && len(list.GetDeliveries()) == 0 && strings.Contains(log[0], "cancel the call") {
				// Cancelled before the service stored it: nothing is
				// kept, nothing written.
				if objs, ups := p.left(t, m, bucket, dest.GetPrefix()); len(objs) != 0 || ups != 0 {
					t.Errorf("%s: a call cancelled before it started left %v and %d uploads", id, objs, ups)
				}
				t.Logf("%s: %s: nothing stored", id, log[0])
				continue
			}
			if err != nil || len(list.GetDeliveries()) != 1 {
				t.Fatalf("%s: the delivery is not listed: %v %v\n%s: %v", id, list.GetDeliveries(), err, strings.Join(log, "\n"), firstErr)
			}
			name = list.GetDeliveries()[0].GetName()
		}
		for step := 0; step < 3; step++ {
			d := settled(name)
			r := anyReplica()
			interrupted := d.GetStagedInput().GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED
			kept := d.GetStagedInput().GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD
			say("  now %s (input %s, %s)", d.GetState(), d.GetStagedInput().GetState(), d.GetError().GetReason())
			switch {
			case interrupted:
				held := d.GetStagedInput().GetBytes()
				switch rng.IntN(4) {
				case 0, 1:
					say("  resume from %d via %s", held, r)
					_ = deliver(r, held, stream[held:], false)
				case 2:
					say("  cancel via %s", r)
					if _, err := delivs[r].CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: name}, p.as); err != nil {
						t.Fatalf("%s: cancel: %v", id, err)
					}
				case 3:
					say("  leave it resumable")
					step = 3
				}
			case kept && d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED:
				action := []string{"retry-task", "restart-workflow"}[rng.IntN(2)]
				if d.GetState() == deliveryv1.DeliveryState_DELIVERY_STATE_CANCELLED {
					action = "restart-workflow"
				}
				switch rng.IntN(4) {
				case 0, 1:
					say("  resolve with %s via %s", action, r)
					_, _ = flows[r].ResolveWorkflow(ctx, &deliveryv1.ResolveWorkflowRequest{Name: d.GetWorkflow(), ActionId: action}, p.as)
				case 2:
					say("  resolve with %s via %s, killed during the upload", action, r)
					killDuring(r, dest.GetPrefix(), func() error {
						_, err := flows[r].ResolveWorkflow(ctx, &deliveryv1.ResolveWorkflowRequest{Name: d.GetWorkflow(), ActionId: action}, p.as)
						return err
					})
				case 3:
					say("  discard via %s", r)
					if _, err := delivs[r].CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: name}, p.as); err != nil {
						t.Fatalf("%s: discard: %v", id, err)
					}
				}
			default:
				step = 3 // final
			}
		}
		// What is kept for a resolution is resolved, so that nothing waits
		// in S3 (an interrupted delivery holds no upload).
		if d := settled(name); d.GetStagedInput().GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD {
			say("  resolve with retry-task")
			if _, err := flows[anyReplica()].ResolveWorkflow(ctx, &deliveryv1.ResolveWorkflowRequest{Name: d.GetWorkflow(), ActionId: "retry-task"}, p.as); err != nil && d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_CANCELLED {
				t.Fatalf("%s: resolve: %v", id, err)
			}
		}
		d := settled(name)
		say("  ends %s (input %s, %s)", d.GetState(), d.GetStagedInput().GetState(), d.GetError().GetReason())
		t.Logf("%s: %s", id, strings.Join(log, "\n"))
		all = append(all, tracked{name: name, prefix: dest.GetPrefix()})
	}

	// The end: every delivery final or resumable, and what it left as it
	// says.
	resumable := map[string]bool{}
	for _, tr := range all {
		d := settled(tr.name)
		objs, ups := p.left(t, m, bucket, tr.prefix)
		switch d.GetState() {
		case deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED:
			if len(d.GetObjects()) != len(wantSums) || len(objs) != len(wantSums) {
				t.Errorf("%s succeeded with %d objects, its prefix holds %d, want %d", tr.name, len(d.GetObjects()), len(objs), len(wantSums))
			}
			for _, o := range d.GetObjects() {
				if k := strings.TrimPrefix(o.GetKey(), tr.prefix); o.GetChecksum() != wantSums[k] {
					t.Errorf("%s: %s is %s, uninterrupted %s", tr.name, k, o.GetChecksum(), wantSums[k])
				}
			}
		case deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING:
			if d.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED {
				t.Errorf("%s is RECEIVING with input %s and no one running it", tr.name, d.GetStagedInput().GetState())
			}
			resumable[deliveryIDOf(tr.name)] = true
			fallthrough
		case deliveryv1.DeliveryState_DELIVERY_STATE_FAILED, deliveryv1.DeliveryState_DELIVERY_STATE_CANCELLED:
			if len(objs) != 0 {
				t.Errorf("%s is %s and left %v", tr.name, d.GetState(), objs)
			}
			if d.GetStagedInput().GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD {
				t.Errorf("%s is %s and still holds its input", tr.name, d.GetState())
			}
		default:
			t.Errorf("%s ended %s", tr.name, d.GetState())
		}
		if ups != 0 {
			t.Errorf("%s (%s) left %d multipart uploads", tr.name, d.GetState(), ups)
		}
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var leased int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM work WHERE id LIKE 'delivery:%'`).Scan(&leased); err != nil {
		t.Fatal(err)
	}
	if leased != 0 {
		t.Errorf("%d deliveries' work is still leased or waiting", leased)
	}
	staged, err := m.S3("", "").ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(stagingBucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range staged.Contents {
		id := strings.Split(strings.TrimPrefix(strings.TrimPrefix(aws.ToString(o.Key), "staging"), "/"), "/")[0]
		if !resumable[id] {
			t.Errorf("staging holds %s, of no resumable delivery", aws.ToString(o.Key))
		}
	}
}

// cancelling cancels the call when it is read: the stream ends with the
// call cancelled, after what came before it.
type cancelling struct{ cancel func() }

func (c *cancelling) Read([]byte) (int, error) {
	c.cancel()
	return 0, errors.New("cancelled by the caller")
}

// left answers the objects and the multipart uploads under prefix.
func (p *processes) left(t *testing.T, m *testenv.MinIO, bucket, prefix string) ([]string, int) {
	t.Helper()
	c := m.S3("", "")
	list, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	var objs []string
	for _, o := range list.Contents {
		objs = append(objs, aws.ToString(o.Key))
	}
	return objs, len(uploadsUnder(t, c, bucket, prefix))
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
