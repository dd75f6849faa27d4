package main

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/pkg/sampledata"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// Two delivery service processes share one PostgreSQL and one staging
// bucket. A delivery to a misspelled bucket fails; the bucket is corrected
// and the workflow resolved through the first replica, which is killed
// (SIGKILL, by its pid) while the resolution uploads. The second claims
// the resolution once its lease runs out, continues its upload, and
// finishes it: the objects equal an uninterrupted delivery's, each exists
// once, and no multipart upload is left.
func TestReplicasTakeOverAResolution(t *testing.T) {
	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	fault := testenv.NewS3Fault(t, m)
	p := startProcesses(t, m, bucket, localserver.SluiceOptions{
		S3Endpoint: fault.Endpoint, DeliveryReplicas: 2,
		Delivery: []string{"--database", testenv.NewDatabase(t), "--lease-ttl", "2s", "--recover-interval", "250ms",
			"--part-size", "5242880", "--staging-url", "s3://" + testenv.NewBucket(t, m) + "/staging"},
		DeliveryEnv: []string{"AWS_ACCESS_KEY_ID=" + m.RootUser, "AWS_SECRET_ACCESS_KEY=" + m.RootPassword, "AWS_REGION=" + m.Region},
	})
	ctx := context.Background()
	cc, err := grpc.NewClient(p.sl.Addrs["delivery-2"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	cc1, err := grpc.NewClient(p.sl.Addrs["delivery"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc1.Close() })
	flows1, flows2, delivs2 := deliveryv1.NewWorkflowServiceClient(cc1), deliveryv1.NewWorkflowServiceClient(cc), deliveryv1.NewDeliveryServiceClient(cc)

	recs := sampledata.All(sampledata.NewCustomer360(nil, 80_000, 8000, 8))
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	opts := deliverclient.Options{CallOptions: []grpc.CallOption{p.as}}
	whole := p.destination(t, "whole", nil)
	want, err := deliverclient.DeliverStream(ctx, p.delivs, &deliveryv1.DeliveryStart{Destination: whole.GetName(), OutputName: "out"}, bytes.NewReader(stream), opts)
	if err != nil {
		t.Fatal(err)
	}
	typo, err := p.dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: production, DestinationId: "typo", Destination: &destinationv1.Destination{
		Credential: p.cred, Prefix: "typo/", Format: csvFormat(), SuccessFile: true, BucketOverride: bucket + "-typo"}}, p.as)
	if err != nil {
		t.Fatal(err)
	}
	_, err = deliverclient.DeliverStream(ctx, p.delivs, &deliveryv1.DeliveryStart{Destination: typo.GetName(), OutputName: "out"}, bytes.NewReader(stream), opts)
	failed := apierror.FromStatus(err)
	if failed == nil || failed.Reason != errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND {
		t.Fatalf("delivery to a misspelled bucket: %v", err)
	}
	name := failed.Metadata["delivery"]
	if _, err := p.dests.UpdateDestination(ctx, &destinationv1.UpdateDestinationRequest{
		Destination: &destinationv1.Destination{Name: typo.GetName(), BucketOverride: bucket},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"bucket_override"}},
	}, p.as); err != nil {
		t.Fatal(err)
	}

	// S3 takes the resolution's first part, then stalls.
	var parts atomic.Int32
	fault.Hold(func(r testenv.S3Request) bool { return r.Bucket == bucket && r.UploadPart() && parts.Add(1) > 1 })
	resolved := make(chan error, 1)
	go func() {
		_, err := flows1.ResolveWorkflow(ctx, &deliveryv1.ResolveWorkflowRequest{Name: name + "/workflow", ActionId: "fix-bucket-name"}, p.as)
		resolved <- err
	}()
	for i := 0; fault.Count("held") == 0; i++ {
		if i == 600 {
			t.Fatalf("the resolution never reached S3; first replica's log:\n%s", p.sl.Log("delivery"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.sl.Kill("delivery")
	fault.Release()
	if err := <-resolved; status.Code(err) != codes.Unavailable {
		t.Errorf("the resolution's caller, when its replica died: %v", err)
	}

	// The second replica finishes it, once the first one's lease ran out.
	var wf *deliveryv1.Workflow
	for i := 0; wf.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_SUCCEEDED; i++ {
		if i == 600 {
			t.Fatalf("the second replica did not finish the resolution: %v\nits log:\n%s", wf, p.sl.Log("delivery-2"))
		}
		time.Sleep(50 * time.Millisecond)
		if wf, err = flows2.GetWorkflow(ctx, &deliveryv1.GetWorkflowRequest{Name: name + "/workflow"}, p.as); err != nil {
			t.Fatal(err)
		}
	}
	if len(wf.GetHistory()) != 1 || wf.GetCurrentRun().GetActionId() != "fix-bucket-name" || wf.GetCurrentRun().GetRun() != 2 {
		t.Errorf("the workflow after the takeover: history %v, current run %v", wf.GetHistory(), wf.GetCurrentRun())
	}
	got, err := delivs2.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Name: name}, p.as)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED || got.GetServiceInstance() != "delivery-2" || len(got.GetObjects()) != len(want.GetObjects()) {
		t.Fatalf("the delivery after the takeover: %v", got)
	}
	keys := map[string]bool{}
	for i, obj := range got.GetObjects() {
		keys[obj.GetKey()] = true
		if strings.TrimPrefix(obj.GetKey(), "typo/") != strings.TrimPrefix(want.GetObjects()[i].GetKey(), "whole/") || obj.GetChecksum() != want.GetObjects()[i].GetChecksum() {
			t.Errorf("object %d: %s %s, uninterrupted %s %s", i, obj.GetKey(), obj.GetChecksum(), want.GetObjects()[i].GetKey(), want.GetObjects()[i].GetChecksum())
		}
	}
	listed, err := m.S3("", "").ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("typo/")})
	if err != nil {
		t.Fatal(err)
	}
	if len(listed.Contents) != len(keys) {
		t.Errorf("%d objects under the prefix, the delivery answers %d", len(listed.Contents), len(keys))
	}
	for _, o := range listed.Contents {
		if !keys[aws.ToString(o.Key)] {
			t.Errorf("an object no delivery answers: %s", aws.ToString(o.Key))
		}
	}
	if ups := uploadsUnder(t, m.S3("", ""), bucket, "typo/"); len(ups) != 0 {
		t.Errorf("uploads left: %v", ups)
	}
	if log := p.sl.WholeLog("delivery-2"); !strings.Contains(log, "took over a stopped delivery") || !strings.Contains(log, "resumed an interrupted upload") {
		t.Errorf("the second replica did not continue the first one's upload; its log ends:\n%s", p.sl.Log("delivery-2"))
	}
}
