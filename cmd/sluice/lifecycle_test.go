package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// landings counts, by key, the requests that make an object land (a
// PutObject, or the completion of a multipart upload) under a prefix.
type landings struct {
	mu     sync.Mutex
	bucket string
	prefix string
	keys   map[string]int
}

func (l *landings) watch(f *testenv.S3Fault) {
	f.When(func(r testenv.S3Request) bool {
		if r.Bucket != l.bucket || !strings.HasPrefix(r.Key, l.prefix) {
			return false
		}
		put := r.Method == http.MethodPut && !r.UploadPart() && r.Query.Get("uploadId") == ""
		if put || r.Complete() {
			l.mu.Lock()
			l.keys[strings.TrimPrefix(r.Key, l.prefix)]++
			l.mu.Unlock()
		}
		return false
	}, func() {})
}

func (l *landings) take() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.keys
	l.keys = map[string]int{}
	return k
}

// retry-task continues and restart-workflow starts over (#23): a split
// delivery fails after some files landed; retrying the failed step writes
// only the files that had not landed, restarting writes every one, and
// both end with exactly the set an uninterrupted delivery writes.
func TestRetryTaskContinuesRestartStartsOver(t *testing.T) {
	m := testenv.SharedMinIO(t)
	fault := testenv.NewS3Fault(t, m)
	w := startWorkflowsOn(t, m, func(c *serveConfig) {
		c.Credential.AWS.S3URL = fault.Endpoint
		c.Delivery.RequestAttempts, c.Delivery.RequestMaxBackoff = 1, 100*time.Millisecond
		c.Delivery.TransientRetries = 0
	})
	ctx := context.Background()
	recs := customerBatches(t, 6000, 500)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	settings := func() *destinationv1.Destination {
		return &destinationv1.Destination{Format: csvFormat(), Split: &destinationv1.Split{MaxRows: 1000}, SuccessFile: true, Manifest: true}
	}
	whole := w.destination(t, "whole", settings())
	want, err := deliverclient.DeliverStream(ctx, w.delivs, &deliveryv1.DeliveryStart{Destination: whole.GetName(), OutputName: "out"}, bytes.NewReader(stream),
		deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}})
	if err != nil {
		t.Fatal(err)
	}
	var wantKeys []string
	wantSums := map[string]string{}
	for _, o := range want.GetObjects() {
		key := strings.TrimPrefix(o.GetKey(), whole.GetPrefix())
		wantKeys = append(wantKeys, key)
		if o.GetKind() == "data" {
			wantSums[key] = o.GetChecksum()
		}
	}
	if len(wantSums) != 6 {
		t.Fatalf("the uninterrupted delivery wrote %d data files, want 6", len(wantSums))
	}

	all := []string{"out_00001.csv", "out_00002.csv", "out_00003.csv", "out_00004.csv", "out_00005.csv", "out_00006.csv"}
	for _, c := range []struct {
		action string
		// continues: the resolution writes only the files that had not
		// landed; otherwise every one.
		continues bool
	}{
		{"retry-task", true},
		{"restart-workflow", false},
	} {
		t.Run(c.action, func(t *testing.T) {
			dest := w.destination(t, c.action, settings())
			seen := &landings{bucket: w.bucket, prefix: dest.GetPrefix(), keys: map[string]int{}}
			seen.watch(fault)
			// The fourth file cannot land: S3 fails it past the retries.
			fault.Fail(testenv.InternalError, -1, func(r testenv.S3Request) bool {
				return r.Bucket == w.bucket && r.Key == dest.GetPrefix()+"out_00004.csv" && r.Method != http.MethodDelete
			})
			_, err := deliverclient.DeliverStream(ctx, w.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "out"}, bytes.NewReader(stream),
				deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}})
			fault.Clear()
			seen.watch(fault)
			failed := w.namedIn(t, err)
			if failed.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_FAILED || failed.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD {
				t.Fatalf("after the fault: %v, input %v", failed.GetState(), failed.GetStagedInput().GetState())
			}
			// What landed before the fault stays for retry-task.
			seen.take()
			objs, _ := w.left(t, dest.GetPrefix())
			first := map[string]int{}
			for _, o := range objs {
				first[strings.TrimPrefix(o, dest.GetPrefix())]++
			}
			for _, k := range []string{"out_00001.csv", "out_00002.csv", "out_00003.csv"} {
				if first[k] != 1 || first["out_00004.csv"] != 0 {
					t.Fatalf("after the fault the prefix holds %v, want the files before the fourth", objs)
				}
			}
			got, err := w.resolve(ctx, w.workflow(t, failed.GetWorkflow()), c.action)
			if err != nil {
				t.Fatal(err)
			}
			written := seen.take()
			var files []string
			for k := range written {
				if strings.HasSuffix(k, ".csv") {
					files = append(files, k)
				}
			}
			slices.Sort(files)
			rewritten := all
			if c.continues {
				// Files after the fourth may have landed too, encoded
				// beside it while it failed.
				rewritten = slices.DeleteFunc(slices.Clone(all), func(k string) bool { return first[k] > 0 })
			}
			if !slices.Equal(files, rewritten) {
				t.Errorf("%s wrote %v, want %v (before the fault: %v)", c.action, files, rewritten, first)
			}
			var keys []string
			for _, o := range got.GetObjects() {
				key := strings.TrimPrefix(o.GetKey(), dest.GetPrefix())
				keys = append(keys, key)
				w.checkObject(t, o)
				if sum, ok := wantSums[key]; ok && o.GetChecksum() != sum {
					t.Errorf("%s: %s, uninterrupted %s", key, o.GetChecksum(), sum)
				}
			}
			if !slices.Equal(keys, wantKeys) {
				t.Errorf("%s answered %v, uninterrupted %v", c.action, keys, wantKeys)
			}
			if objs, ups := w.left(t, dest.GetPrefix()); len(objs) != len(wantKeys) || ups != 0 {
				t.Errorf("the prefix holds %v and %d uploads", objs, ups)
			}
			wf := w.workflow(t, failed.GetWorkflow())
			if wf.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_SUCCEEDED || wf.GetCurrentRun().GetActionId() != c.action || len(wf.GetHistory()) != 1 {
				t.Errorf("workflow %v, run %v, history %d", wf.GetState(), wf.GetCurrentRun(), len(wf.GetHistory()))
			}
		})
	}
}

// CancelDelivery stops a running delivery on the real services: WatchDelivery
// follows it from RECEIVING to CANCELLED, its caller gets CANCELLED, and
// nothing is left in the bucket; a succeeded delivery cannot be cancelled.
func TestCancelAndWatchADelivery(t *testing.T) {
	w := startWorkflows(t, nil)
	ctx := context.Background()
	recs := customerBatches(t, 6000, 500)
	dest := w.destination(t, "cancelled", &destinationv1.Destination{Format: csvFormat(), Split: &destinationv1.Split{MaxRows: 1000}})
	br := &blockingAfter{RecordReader: reader(t, recs), after: 4, release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := deliverclient.Deliver(ctx, w.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "out"}, br,
			deliverclient.Options{MessageBytes: 64 << 10, CallOptions: []grpc.CallOption{w.admin}})
		done <- err
	}()
	running := w.waitListed(t, `destination = "`+dest.GetName()+`"`, func(d *deliveryv1.Delivery) bool { return d.GetProgress().GetRows() > 0 })
	watch, err := w.delivs.WatchDelivery(ctx, &deliveryv1.WatchDeliveryRequest{Name: running.GetName()}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	var states []deliveryv1.DeliveryState
	watched := make(chan error, 1)
	go func() {
		for {
			d, err := watch.Recv()
			if errors.Is(err, io.EOF) {
				watched <- nil
				return
			}
			if err != nil {
				watched <- err
				return
			}
			if len(states) == 0 || states[len(states)-1] != d.GetState() {
				states = append(states, d.GetState())
			}
		}
	}()
	cancelled := make(chan *deliveryv1.Delivery, 1)
	go func() {
		d, err := w.delivs.CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: running.GetName()}, w.admin)
		if err != nil {
			t.Error(err)
		}
		cancelled <- d
	}()
	time.Sleep(200 * time.Millisecond)
	close(br.release) // the caller's next message meets the cancel
	err = <-done
	if e := apierror.FromStatus(err); e.Reason != errorsv1.ErrorReason_ERROR_REASON_CANCELLED || e.Metadata["delivery"] != running.GetName() {
		t.Fatalf("the caller got %v", err)
	}
	d := <-cancelled
	if d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_CANCELLED {
		t.Fatalf("CancelDelivery answered %v", d.GetState())
	}
	if err := <-watched; err != nil {
		t.Fatal(err)
	}
	if len(states) < 2 || states[0] != deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING || states[len(states)-1] != deliveryv1.DeliveryState_DELIVERY_STATE_CANCELLED {
		t.Errorf("watched %v", states)
	}
	if objs, ups := w.left(t, dest.GetPrefix()); len(objs) != 0 || ups != 0 {
		t.Errorf("a cancelled delivery left %v and %d uploads", objs, ups)
	}
	if wf := w.workflow(t, d.GetWorkflow()); wf.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_CANCELLED {
		t.Errorf("workflow %v", wf.GetState())
	}
	// Again: unchanged. A succeeded delivery: refused.
	if again, err := w.delivs.CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: d.GetName()}, w.admin); err != nil || again.GetEtag() != d.GetEtag() {
		t.Errorf("cancelling twice: %v", err)
	}
	ok, err := w.deliver(ctx, dest.GetName(), reader(t, recs[:1]), w.admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.delivs.CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: ok.GetName()}, w.admin); apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION {
		t.Errorf("cancelling a succeeded delivery: %v", err)
	}
	// Another tenant's caller, and one who may not use the destination,
	// cannot see it, let alone cancel or watch it: exactly as for a
	// delivery that does not exist.
	for who, as := range map[string]grpc.CallOption{"another tenant": w.r.token("globex", auth.PolicyAdministrator), "restricted PII": w.r.token("acme", auth.PolicyRestrictPII)} {
		if _, err := w.delivs.CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: d.GetName()}, as); status.Code(err) != codes.NotFound {
			t.Errorf("%s cancelling: %v", who, err)
		}
		s, err := w.delivs.WatchDelivery(ctx, &deliveryv1.WatchDeliveryRequest{Name: d.GetName()}, as)
		if err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != codes.NotFound {
			t.Errorf("%s watching: %v", who, err)
		}
	}
	// Bad names are refused with a field violation.
	if _, err := w.delivs.CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: "deliveries/x"}, w.admin); apierror.FromStatus(err).Fields()["name"] == "" {
		t.Errorf("a bad name: %v", err)
	}
}
