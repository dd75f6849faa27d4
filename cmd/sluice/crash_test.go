package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/pkg/sampledata"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// The delivery service is killed (SIGKILL, by its pid) while a delivery
// is receiving, after some of its files landed. Started again, it takes
// back what the delivery wrote (no object, no multipart upload left) and
// holds its input for the caller, who resumes from the offset it reports:
// what lands equals an uninterrupted delivery.
func TestDeliveryServiceKilledMidDelivery(t *testing.T) {
	for _, store := range []string{"dir", "s3"} {
		t.Run("staging on "+store, func(t *testing.T) { killedMidDelivery(t, store) })
	}
}

func killedMidDelivery(t *testing.T, store string) {
	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	var o localserver.SluiceOptions
	if store == "s3" {
		// A bucket of Sluice's own, written as its platform identity.
		o.Delivery = []string{"--staging-url", "s3://" + testenv.NewBucket(t, m) + "/staging"}
		o.DeliveryEnv = []string{"AWS_ACCESS_KEY_ID=" + m.RootUser, "AWS_SECRET_ACCESS_KEY=" + m.RootPassword, "AWS_REGION=" + m.Region}
	}
	p := startProcesses(t, m, bucket, o)
	sl, as, ctx := p.sl, p.as, context.Background()
	mk := func(id string) *destinationv1.Destination {
		return p.destination(t, id, &destinationv1.Split{MaxRows: 1500})
	}
	whole, crashed := mk("whole"), mk("crashed")
	delivs := p.delivs
	recs := sampledata.All(sampledata.NewCustomer360(nil, 6000, 500, 4))
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	want, err := deliverclient.DeliverStream(ctx, delivs, &deliveryv1.DeliveryStart{Destination: whole.GetName(), OutputName: "out"}, bytes.NewReader(stream),
		deliverclient.Options{CallOptions: []grpc.CallOption{as}})
	if err != nil {
		t.Fatal(err)
	}

	start := &deliveryv1.DeliveryStart{Destination: crashed.GetName(), OutputName: "out", IdempotencyKey: "crash-1"}
	call, err := delivs.Deliver(ctx, as)
	if err != nil {
		t.Fatal(err)
	}
	if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_Start{Start: start}}); err != nil {
		t.Fatal(err)
	}
	cut := len(stream) * 3 / 5
	for off := 0; off < cut; off += 32 << 10 {
		if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: stream[off:min(cut, off+32<<10)]}}); err != nil {
			t.Fatal(err)
		}
	}
	s3c := m.S3("", "")
	landed := func() (objects []string, uploads int) {
		list, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("crashed/")})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range list.Contents {
			objects = append(objects, aws.ToString(o.Key))
		}
		return objects, len(uploadsUnder(t, s3c, bucket, "crashed/"))
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for range 300 {
			if ok() {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("waited in vain for %s; delivery service log:\n%s", what, sl.Log("delivery"))
	}
	waitFor("files to land before the crash", func() bool { objs, _ := landed(); return len(objs) >= 2 })

	sl.Kill("delivery")
	if err := sl.Start("delivery"); err != nil {
		t.Fatal(err)
	}
	var held *deliveryv1.Delivery
	waitFor("the restarted service to hold the input for the caller", func() bool {
		list, err := delivs.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: production, Filter: `destination = "` + crashed.GetName() + `"`}, as)
		if err != nil || len(list.GetDeliveries()) != 1 {
			return false
		}
		held = list.GetDeliveries()[0]
		return held.GetStagedInput().GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED
	})
	if objs, ups := landed(); len(objs) != 0 || ups != 0 {
		t.Fatalf("after the restart the prefix holds %v and %d multipart uploads", objs, ups)
	}
	offset := held.GetStagedInput().GetBytes()
	// On disk every message is held; S3 holds whole segments (here none).
	if (store == "dir" && offset == 0) || offset > int64(cut) {
		t.Fatalf("the service holds %d bytes of the %d sent", offset, cut)
	}
	start.ResumeOffset = offset
	got, err := deliverclient.DeliverStream(ctx, delivs, start, bytes.NewReader(stream[offset:]), deliverclient.Options{CallOptions: []grpc.CallOption{as}})
	if err != nil {
		t.Fatalf("resume at %d: %v", offset, err)
	}
	if got.GetName() != held.GetName() || len(got.GetObjects()) != len(want.GetObjects()) {
		t.Fatalf("resumed %s with %d objects, uninterrupted %d", got.GetName(), len(got.GetObjects()), len(want.GetObjects()))
	}
	for i, obj := range got.GetObjects() {
		if strings.TrimPrefix(obj.GetKey(), "crashed/") != strings.TrimPrefix(want.GetObjects()[i].GetKey(), "whole/") || obj.GetChecksum() != want.GetObjects()[i].GetChecksum() {
			t.Errorf("object %d: %s %s, uninterrupted %s %s", i, obj.GetKey(), obj.GetChecksum(), want.GetObjects()[i].GetKey(), want.GetObjects()[i].GetChecksum())
		}
	}
	if objs, ups := landed(); len(objs) != len(want.GetObjects()) || ups != 0 {
		t.Errorf("the prefix holds %v and %d uploads", objs, ups)
	}
}

// The delivery service is killed (SIGKILL) after the whole stream arrived,
// while it waits on S3 to take the last parts (requests to the
// destination's bucket held by a proxy, as a stalled S3 holds them). Started
// again, it runs the delivery from its staged input without the caller,
// keeping the parts S3 already holds, and the caller, asking again with
// the same idempotency key, gets the delivery that landed what an
// uninterrupted one lands. With staging on S3 the staging bucket stays
// reachable, as Sluice's own bucket would while a customer's stalls.
func TestDeliveryServiceKilledWhileUploading(t *testing.T) {
	for _, store := range []string{"dir", "s3"} {
		t.Run("staging on "+store, func(t *testing.T) { killedWhileUploading(t, store) })
	}
}

func killedWhileUploading(t *testing.T, store string) {
	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	fault := testenv.NewS3Fault(t, m)
	o := localserver.SluiceOptions{S3Endpoint: fault.Endpoint, Delivery: []string{"--part-size", "5242880"}}
	if store == "s3" {
		o.Delivery = append(o.Delivery, "--staging-url", "s3://"+testenv.NewBucket(t, m)+"/staging")
		o.DeliveryEnv = []string{"AWS_ACCESS_KEY_ID=" + m.RootUser, "AWS_SECRET_ACCESS_KEY=" + m.RootPassword, "AWS_REGION=" + m.Region}
	}
	p := startProcesses(t, m, bucket, o)
	sl, as, ctx := p.sl, p.as, context.Background()
	mk := func(id string) *destinationv1.Destination { return p.destination(t, id, nil) }
	whole, crashed := mk("whole"), mk("crashed")
	delivs := p.delivs
	recs := sampledata.All(sampledata.NewCustomer360(nil, 80_000, 8000, 8))
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	opts := deliverclient.Options{CallOptions: []grpc.CallOption{as}}
	want, err := deliverclient.DeliverStream(ctx, delivs, &deliveryv1.DeliveryStart{Destination: whole.GetName(), OutputName: "out"}, bytes.NewReader(stream), opts)
	if err != nil {
		t.Fatal(err)
	}

	start := &deliveryv1.DeliveryStart{Destination: crashed.GetName(), OutputName: "out", IdempotencyKey: "upload-crash"}
	call, err := delivs.Deliver(ctx, as)
	if err != nil {
		t.Fatal(err)
	}
	send := func(b []byte) {
		if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: b}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_Start{Start: start}}); err != nil {
		t.Fatal(err)
	}
	half := len(stream) * 7 / 10
	for off := 0; off < half; off += 1 << 20 {
		send(stream[off:min(half, off+1<<20)])
	}
	get := func() *deliveryv1.Delivery {
		list, err := delivs.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: production, Filter: `destination = "` + crashed.GetName() + `"`}, as)
		if err != nil || len(list.GetDeliveries()) != 1 {
			return nil
		}
		return list.GetDeliveries()[0]
	}
	wait := func(what string, ok func(*deliveryv1.Delivery) bool) *deliveryv1.Delivery {
		t.Helper()
		for range 400 {
			if d := get(); d != nil && ok(d) {
				return d
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("waited in vain for %s; delivery log:\n%s", what, sl.Log("delivery"))
		return nil
	}
	wait("most of the stream to arrive and two parts to be stored", func(d *deliveryv1.Delivery) bool {
		return d.GetProgress().GetBytesIn() == int64(half) && d.GetProgress().GetParts() >= 2
	})
	// S3 stalls; the rest of the stream and its end arrive.
	fault.Hold(func(r testenv.S3Request) bool { return r.Bucket == bucket })
	for off := half; off < len(stream); off += 1 << 20 {
		send(stream[off:min(len(stream), off+1<<20)])
	}
	if err := call.CloseSend(); err != nil {
		t.Fatal(err)
	}
	wait("the stream to end and the upload to wait on S3", func(d *deliveryv1.Delivery) bool {
		return d.GetState() == deliveryv1.DeliveryState_DELIVERY_STATE_UPLOADING
	})
	sl.Kill("delivery")
	fault.Release()
	if err := sl.Start("delivery"); err != nil {
		t.Fatal(err)
	}
	// The caller asks again with its key: the answer waits for the rerun.
	got, err := deliverclient.DeliverStream(ctx, delivs, start, bytes.NewReader(stream), opts)
	if err != nil {
		t.Fatalf("asking again after the crash: %v\n%s", err, sl.Log("delivery"))
	}
	if got.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED || got.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED {
		t.Fatalf("after the rerun: %v", got)
	}
	if len(got.GetObjects()) != len(want.GetObjects()) {
		t.Fatalf("rerun landed %d objects, uninterrupted %d", len(got.GetObjects()), len(want.GetObjects()))
	}
	for i, obj := range got.GetObjects() {
		if strings.TrimPrefix(obj.GetKey(), "crashed/") != strings.TrimPrefix(want.GetObjects()[i].GetKey(), "whole/") || obj.GetChecksum() != want.GetObjects()[i].GetChecksum() {
			t.Errorf("object %d: %s %s, uninterrupted %s %s", i, obj.GetKey(), obj.GetChecksum(), want.GetObjects()[i].GetKey(), want.GetObjects()[i].GetChecksum())
		}
	}
	if ups := uploadsUnder(t, m.S3("", ""), bucket, "crashed/"); len(ups) != 0 {
		t.Errorf("uploads left: %v", ups)
	}
	if log := sl.Log("delivery"); !strings.Contains(log, "resumed an interrupted upload") {
		t.Errorf("the rerun sent every part again; its log:\n%s", log)
	}
}

// processes is sluice's three services running as their own processes on
// a MinIO, with an administrator's call option and a credential on bucket.
type processes struct {
	sl     *localserver.Sluice
	as     grpc.CallOption
	cred   string
	dests  destinationv1.DestinationServiceClient
	delivs deliveryv1.DeliveryServiceClient
}

func startProcesses(t *testing.T, m *testenv.MinIO, bucket string, o localserver.SluiceOptions) *processes {
	t.Helper()
	o.MinIO = m
	sl, err := localserver.StartSluice(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sl.Stop)
	key, err := auth.LoadOrCreateSigningKey(launch.DevUserKeyPath(filepath.Join(sl.Dir, "data")))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.NewSigner(key).Mint("ops@acme.test", "acme", []string{auth.PolicyAdministrator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &processes{sl: sl, as: grpc.PerRPCCredentials(auth.BearerCredentials(tok))}
	dial := func(name string) *grpc.ClientConn {
		cc, err := grpc.NewClient(sl.Addrs[name], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	cred, err := credentialv1.NewCredentialServiceClient(dial("credential")).CreateCredential(context.Background(), &credentialv1.CreateCredentialRequest{Parent: production, CredentialId: "minio",
		Credential: &credentialv1.Credential{Bucket: bucket, Region: m.Region, Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: m.RootUser, SecretAccessKey: m.RootPassword}}}}, p.as)
	if err != nil {
		t.Fatal(err)
	}
	p.cred = cred.GetName()
	p.dests = destinationv1.NewDestinationServiceClient(dial("destination"))
	p.delivs = deliveryv1.NewDeliveryServiceClient(dial("delivery"))
	return p
}

// destination creates a CSV destination under its own prefix.
func (p *processes) destination(t *testing.T, id string, split *destinationv1.Split) *destinationv1.Destination {
	t.Helper()
	d, err := p.dests.CreateDestination(context.Background(), &destinationv1.CreateDestinationRequest{Parent: production, DestinationId: id, Destination: &destinationv1.Destination{
		Credential: p.cred, Prefix: id + "/", Format: csvFormat(), Split: split, SuccessFile: true}}, p.as)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
