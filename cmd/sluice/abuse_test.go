package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// Idle clients cannot exhaust the delivery service (#22): one tenant opens
// more streams than it may, each sending a large Arrow body gzipped (tiny
// on the wire) and stalling before its end. The service refuses the
// streams past the tenant's limit with TOO_MANY_STREAMS, holds no more of
// the bodies than its receive budget (the rest wait, then are interrupted
// with RECEIVE_BUDGET_SPENT), and interrupts the stalled ones after the
// idle timeout, resumable; the delivery process's peak RSS stays within
// the budget's bound, another tenant's delivery succeeds meanwhile, and no
// stream is answered INTERNAL. Larger by hand: SLUICE_ABUSE_STREAMS.
func TestIdleClientsCannotExhaustTheDeliveryService(t *testing.T) {
	const (
		budget      = 80 << 20
		body        = 30 << 20
		tenantLimit = 12
	)
	streams := 24
	if s := os.Getenv("SLUICE_ABUSE_STREAMS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		streams = n
	}
	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	p := startProcesses(t, m, bucket, localserver.SluiceOptions{Delivery: []string{
		"--max-batch-bytes", strconv.Itoa(32 << 20), "--receive-budget", strconv.Itoa(budget), "--budget-wait", "3s",
		"--stream-idle-timeout", "4s", "--max-tenant-streams", strconv.Itoa(tenantLimit), "--max-streams", "64",
	}})
	ctx := context.Background()
	// The other tenant, with its own credential and destination.
	key, err := auth.LoadOrCreateSigningKey(launch.DevUserKeyPath(filepath.Join(p.sl.Dir, "data")))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.NewSigner(key).Mint("mallory@evil.test", "evil", []string{auth.PolicyAdministrator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	evil := grpc.PerRPCCredentials(auth.BearerCredentials(tok))
	evilParent := "tenants/evil/environments/production"
	cc, err := grpc.NewClient(p.sl.Addrs["credential"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cred, err := credentialv1.NewCredentialServiceClient(cc).CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: evilParent, CredentialId: "minio",
		Credential: &credentialv1.Credential{Bucket: bucket, Region: m.Region, Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: m.RootUser, SecretAccessKey: m.RootPassword}}}}, evil)
	if err != nil {
		t.Fatal(err)
	}
	evilDest, err := p.dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: evilParent, DestinationId: "flood", Destination: &destinationv1.Destination{
		Credential: cred.GetName(), Prefix: "flood/", Format: csvFormat()}}, evil)
	if err != nil {
		t.Fatal(err)
	}
	mine := p.destination(t, "bystander", nil)

	// One binary value of 30 MiB of zeros: a 30 MiB body that gzips to
	// almost nothing. Each stream sends all but its last MiB, then stalls.
	schema := arrow.NewSchema([]arrow.Field{{Name: "blob", Type: arrow.BinaryTypes.Binary}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	b.Field(0).(*array.BinaryBuilder).Append(make([]byte, body))
	rec := b.NewRecordBatch()
	b.Release()
	stream := ipcBytes(t, schema, rec)
	rec.Release()
	stall := stream[:len(stream)-(1<<20)]

	rssBefore := peakRSS(t, p.sl.Pid("delivery"))
	type outcome struct {
		err  error
		sent bool
	}
	results := make(chan outcome, streams)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call, err := p.delivs.Deliver(ctx, evil, grpc.UseCompressor(gzip.Name))
			if err != nil {
				results <- outcome{err: err}
				return
			}
			start := &deliveryv1.DeliveryStart{Destination: evilDest.GetName(), OutputName: fmt.Sprint("flood-", i), IdempotencyKey: fmt.Sprint("flood-", i)}
			if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_Start{Start: start}}); err != nil {
				results <- outcome{err: err}
				return
			}
			for off := 0; off < len(stall); off += 4 << 20 {
				if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: stall[off:min(len(stall), off+4<<20)]}}); err != nil {
					break // the server ended the stream: its status says why
				}
			}
			// Stalled: never closes its side. Whatever the server answers
			// comes on RecvMsg.
			err = call.RecvMsg(&deliveryv1.Delivery{})
			results <- outcome{err: err, sent: true}
		}()
	}
	// Meanwhile another tenant delivers, within a deadline.
	time.Sleep(time.Second)
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got, err := deliverclient.Deliver(bctx, p.delivs, &deliveryv1.DeliveryStart{Destination: mine.GetName(), OutputName: "bystander"},
		reader(t, customerBatches(t, 1000, 1000)), deliverclient.Options{CallOptions: []grpc.CallOption{p.as}})
	if err != nil {
		t.Fatalf("the other tenant's delivery, beside the flood: %v", err)
	}
	if got.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED || got.GetProgress().GetRows() != 1000 {
		t.Fatalf("the other tenant's delivery: %v, %d rows", got.GetState(), got.GetProgress().GetRows())
	}
	wg.Wait()
	close(results)
	counts := map[string]int{}
	for r := range results {
		e := apierror.FromStatus(r.err)
		reason := apierror.ReasonName(e.Reason)
		switch e.Reason {
		case errorsv1.ErrorReason_ERROR_REASON_TOO_MANY_STREAMS, errorsv1.ErrorReason_ERROR_REASON_RECEIVE_BUDGET_SPENT:
			if e.Code != codes.ResourceExhausted || e.RetryAfter <= 0 {
				t.Errorf("%s answered %v with RetryInfo %v, want RESOURCE_EXHAUSTED with a delay", reason, e.Code, e.RetryAfter)
			}
		case errorsv1.ErrorReason_ERROR_REASON_STREAM_IDLE:
			if e.Metadata["resume_offset"] == "" {
				t.Errorf("an idle stream was interrupted without a resume offset: %+v", e)
			}
		default:
			t.Errorf("a flooding stream was answered %v %s: %v", e.Code, reason, r.err)
		}
		counts[reason]++
	}
	t.Logf("the flood's streams were answered: %v", counts)
	if counts["TOO_MANY_STREAMS"] != max(0, streams-tenantLimit) {
		t.Errorf("%d streams refused for the tenant's limit, want %d", counts["TOO_MANY_STREAMS"], max(0, streams-tenantLimit))
	}
	// How many held a body until they idled, and how many waited past
	// the budget's wait, depends on how fast the flood's clients send
	// (the race detector slows them); every admitted one ended one way or
	// the other, and what they held together is bounded below.
	if counts["STREAM_IDLE"]+counts["RECEIVE_BUDGET_SPENT"] != min(streams, tenantLimit) {
		t.Errorf("%d streams idled and %d waited past the budget, want the %d admitted", counts["STREAM_IDLE"], counts["RECEIVE_BUDGET_SPENT"], min(streams, tenantLimit))
	}
	// Peak RSS: the budget, one message in flight per stream, and as much
	// again for the garbage collector's headroom.
	bound := rssBefore + 2*(budget+tenantLimit*8<<20) + 64<<20
	if peak := peakRSS(t, p.sl.Pid("delivery")); peak > bound {
		t.Errorf("the delivery service's peak RSS rose from %d MiB to %d MiB, over the bound of %d MiB", rssBefore>>20, peak>>20, bound>>20)
	} else {
		t.Logf("the delivery service's peak RSS: %d MiB before the flood, %d MiB after (bound %d MiB)", rssBefore>>20, peak>>20, bound>>20)
	}
}

// peakRSS answers a process's peak resident set (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// A delivery whose caller stalls gives its part buffers back (#22): with
// two buffers (one per tenant at a time), three of a tenant's deliveries
// stall after sending rows, and its fourth still goes through; then the
// stalled ones go on and land every row, their parked bytes restored.
func TestStalledDeliveriesGiveTheirPartBuffersBack(t *testing.T) {
	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	p := startProcesses(t, m, bucket, localserver.SluiceOptions{Delivery: []string{
		"--part-buffers", "2", "--part-size", strconv.Itoa(5 << 20), "--stream-idle-timeout", "2m",
	}})
	ctx := context.Background()
	dest := p.destination(t, "parked", nil)
	type stalled struct {
		call deliveryv1.DeliveryService_DeliverClient
		rest []byte
		rows int64
		name string
	}
	var calls []stalled
	for i := range 3 {
		recs := customerBatches(t, 6000, 3000)
		stream := ipcBytes(t, recs[0].Schema(), recs...)
		call, err := p.delivs.Deliver(ctx, p.as)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprint("stalled-", i)
		if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_Start{Start: &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: name}}}); err != nil {
			t.Fatal(err)
		}
		cut := len(stream) * 2 / 3 // past the first batch: rows are in a part
		if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: stream[:cut]}}); err != nil {
			t.Fatal(err)
		}
		calls = append(calls, stalled{call: call, rest: stream[cut:], rows: 6000, name: name})
	}
	time.Sleep(3 * time.Second) // the three stall, past parkAfter
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got, err := deliverclient.Deliver(bctx, p.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "beside"},
		reader(t, customerBatches(t, 1000, 1000)), deliverclient.Options{CallOptions: []grpc.CallOption{p.as}})
	if err != nil {
		t.Fatalf("a delivery beside three stalled ones, with two part buffers: %v", err)
	}
	if got.GetProgress().GetRows() != 1000 {
		t.Fatalf("beside: %d rows", got.GetProgress().GetRows())
	}
	for _, c := range calls {
		if err := c.call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: c.rest}}); err != nil {
			t.Fatal(err)
		}
		d, err := c.call.CloseAndRecv()
		if err != nil {
			t.Fatalf("%s, once it went on: %v", c.name, err)
		}
		var rows int64
		for _, obj := range d.GetObjects() {
			if obj.GetKind() != "data" {
				continue
			}
			out, err := m.S3("", "").GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(obj.GetKey())})
			if err != nil {
				t.Fatal(err)
			}
			records, err := csv.NewReader(out.Body).ReadAll()
			out.Body.Close()
			if err != nil {
				t.Fatalf("%s: %v", obj.GetKey(), err)
			}
			rows += int64(len(records)) - 1 // less the header
		}
		if rows != c.rows || d.GetProgress().GetRows() != c.rows {
			t.Fatalf("%s landed %d rows (answered %d), want %d", c.name, rows, d.GetProgress().GetRows(), c.rows)
		}
	}
}

// One tenant's failed deliveries, whose input Sluice keeps for a week,
// fill no more than that tenant's share of staging (#22): its next
// delivery is refused STAGING_FULL for its tenant, while another tenant's
// deliveries go on.
func TestEachTenantHasItsShareOfStaging(t *testing.T) {
	const share = 1 << 20
	e := startDelivering(t, func(c *serveConfig) {
		c.Delivery.StagingMaxBytes, c.Delivery.StagingTenantMaxBytes = 4*share, share
	})
	ctx := context.Background()
	recs := customerBatches(t, 3000, 1000)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	failing := e.destination(t, "failing", &destinationv1.Destination{Format: csvFormat(), BucketOverride: "no-such-bucket-" + e.bucket})
	var refused *apierror.Error
	kept := 0
	for range 4 * share / len(stream) {
		_, err := deliverclient.DeliverStream(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: failing.GetName()}, bytes.NewReader(stream),
			deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
		if got := apierror.FromStatus(err); got.Reason == errorsv1.ErrorReason_ERROR_REASON_STAGING_FULL {
			refused = got
			break
		} else if got.Reason != errorsv1.ErrorReason_ERROR_REASON_ACCESS_DENIED {
			t.Fatalf("a delivery to a bucket it may not write: %v", err)
		}
		kept++
	}
	if refused == nil || refused.Metadata["scope"] != "tenant" || refused.Code != codes.ResourceExhausted {
		t.Fatalf("after %d failed deliveries kept their input: %+v, want STAGING_FULL for the tenant", kept, refused)
	}
	if want := share/len(stream) + 1; kept > want {
		t.Fatalf("%d deliveries kept %d bytes before the tenant was refused, over its share of %d", kept, kept*len(stream), share)
	}
	// Another tenant, with its own credential and destination, delivers.
	other := e.r.token("globex", auth.PolicyAdministrator)
	parent := "tenants/globex/environments/production"
	cred, err := credentialv1.NewCredentialServiceClient(e.r.conns["credential"]).CreateCredential(ctx, &credentialv1.CreateCredentialRequest{
		Parent: parent, CredentialId: "minio",
		Credential: &credentialv1.Credential{Bucket: e.bucket, Region: e.m.Region, Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: e.key, SecretAccessKey: e.secret}}},
	}, other)
	if err != nil {
		t.Fatal(err)
	}
	dest, err := e.dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: parent, DestinationId: "fine", Destination: &destinationv1.Destination{
		Credential: cred.GetName(), Prefix: "globex/", Format: csvFormat()}}, other)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		d, err := deliverclient.DeliverStream(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: fmt.Sprint("out-", i)}, bytes.NewReader(stream),
			deliverclient.Options{CallOptions: []grpc.CallOption{other}})
		if err != nil || d.GetProgress().GetRows() != 3000 {
			t.Fatalf("another tenant's delivery %d beside the first tenant's kept failures: %v", i, err)
		}
	}
}

// A value the destination's settings cannot write (quote mode none with
// no escape character, a value holding the delimiter) answers
// InvalidArgument naming the column and row, never INTERNAL, and is a
// fault of the data: nothing kept, no retry offered (#22). A nested column
// that must fail so is refused before any byte, by name.
func TestValuesTheFormatCannotWriteAreTheDatasFault(t *testing.T) {
	e := startDelivering(t, nil)
	ctx := context.Background()
	dest := e.destination(t, "bare", &destinationv1.Destination{Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{
		Delimited: &destinationv1.DelimitedFormat{QuoteMode: destinationv1.QuoteMode_QUOTE_MODE_NONE, NullValue: `\N`}}}})
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "city", Type: arrow.BinaryTypes.String}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	for i, city := range []string{"Paris", "Lyon", "New York, NY", "Oslo"} {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		b.Field(1).(*array.StringBuilder).Append(city)
	}
	rec := b.NewRecordBatch()
	b.Release()
	defer rec.Release()
	_, err := deliverclient.DeliverStream(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName()}, bytes.NewReader(ipcBytes(t, schema, rec)),
		deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
	got := apierror.FromStatus(err)
	if got.Code != codes.InvalidArgument || got.Reason != errorsv1.ErrorReason_ERROR_REASON_VALUE_NOT_WRITABLE || got.Metadata["column"] != "city" || got.Metadata["row"] != "3" {
		t.Fatalf("a value holding the delimiter under quote mode none: %v (%+v), want VALUE_NOT_WRITABLE for column city, row 3", err, got)
	}
	if strings.Contains(err.Error(), "New York") {
		t.Errorf("the error echoes the value: %v", err)
	}
	d := e.namedIn(t, err)
	if d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_FAILED || d.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED {
		t.Fatalf("the delivery: %v, input %v; want FAILED with nothing kept", d.GetState(), d.GetStagedInput().GetState())
	}
	wf, err := deliveryv1.NewWorkflowServiceClient(e.r.conns["delivery"]).GetWorkflow(ctx, &deliveryv1.GetWorkflowRequest{Name: d.GetWorkflow()}, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range wf.GetActions() {
		if a.GetKind() == deliveryv1.ActionKind_ACTION_KIND_RETRY_TASK || a.GetKind() == deliveryv1.ActionKind_ACTION_KIND_RESTART_WORKFLOW {
			t.Errorf("the workflow offers %v for data that fails the same way every time", a.GetKind())
		}
	}
	// A struct column, written as JSON text, is refused up front.
	nested := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "address", Type: arrow.StructOf(arrow.Field{Name: "city", Type: arrow.BinaryTypes.String})}}, nil)
	nb := array.NewRecordBuilder(memory.DefaultAllocator, nested)
	nb.Field(0).(*array.Int64Builder).Append(1)
	sb := nb.Field(1).(*array.StructBuilder)
	sb.Append(true)
	sb.FieldBuilder(0).(*array.StringBuilder).Append("Oslo")
	nrec := nb.NewRecordBatch()
	nb.Release()
	defer nrec.Release()
	_, err = deliverclient.DeliverStream(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName()}, bytes.NewReader(ipcBytes(t, nested, nrec)),
		deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
	if got := apierror.FromStatus(err); got.Code != codes.InvalidArgument || got.Reason != errorsv1.ErrorReason_ERROR_REASON_SCHEMA_NOT_SUPPORTED || got.Metadata["column"] != "address" {
		t.Fatalf("a struct column under quote mode none: %v, want SCHEMA_NOT_SUPPORTED for column address", err)
	}
}

// A TAR delivery spools its file's rows under the data directory, not the
// system's temporary one; when the delivery service is SIGKILLed midway,
// its restart removes what the spool held (#22: plaintext rows stayed in
// /tmp, uncounted, for good).
func TestKilledTarSpoolIsRemovedOnRestart(t *testing.T) {
	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	p := startProcesses(t, m, bucket, localserver.SluiceOptions{})
	ctx := context.Background()
	d, err := p.dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: production, DestinationId: "tarred", Destination: &destinationv1.Destination{
		Credential: p.cred, Prefix: "tarred/", Format: csvFormat(), Compression: &destinationv1.Compression{Kind: destinationv1.CompressionKind_COMPRESSION_KIND_TAR}}}, p.as)
	if err != nil {
		t.Fatal(err)
	}
	spoolDir := filepath.Join(p.sl.Dir, "data", "spool")
	tmpBefore, _ := filepath.Glob(filepath.Join(os.TempDir(), "sluice-tar-spool-*"))
	recs := customerBatches(t, 20_000, 5000)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	call, err := p.delivs.Deliver(ctx, p.as)
	if err != nil {
		t.Fatal(err)
	}
	if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_Start{Start: &deliveryv1.DeliveryStart{Destination: d.GetName(), OutputName: "out"}}}); err != nil {
		t.Fatal(err)
	}
	if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: stream[:len(stream)*3/4]}}); err != nil {
		t.Fatal(err)
	}
	var spooled []string
	for range 200 {
		if spooled, _ = filepath.Glob(filepath.Join(spoolDir, "sluice-tar-spool-*")); len(spooled) > 0 {
			if fi, err := os.Stat(spooled[0]); err == nil && fi.Size() > 0 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(spooled) == 0 {
		t.Fatalf("no TAR spool under the data directory (%s)", spoolDir)
	}
	if tmpAfter, _ := filepath.Glob(filepath.Join(os.TempDir(), "sluice-tar-spool-*")); len(tmpAfter) > len(tmpBefore) {
		t.Errorf("a TAR spool in the system temporary directory: %v", tmpAfter)
	}
	p.sl.Kill("delivery")
	if left, _ := filepath.Glob(filepath.Join(spoolDir, "sluice-tar-spool-*")); len(left) == 0 {
		t.Fatal("the killed process's spool is gone before the restart: nothing was tested")
	}
	if err := p.sl.Start("delivery"); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(spoolDir, "sluice-tar-spool-*")); len(left) != 0 {
		t.Fatalf("the restarted delivery service left the killed one's spool: %v", left)
	}
}

// A hung S3 (every answer dropped, as a stopped server does) holds a
// delivery no longer than --s3-hung-limit for an operation, all its
// attempts together: the delivery fails to a TRANSIENT workflow without
// running again into the same hang, other calls answer meanwhile, and
// once S3 answers again, Resolve delivers from the kept data (#22: the
// caller waited 22.5 minutes).
func TestHungS3IsBounded(t *testing.T) {
	m := testenv.SharedMinIO(t)
	network := testenv.NewNetwork(t, m.Endpoint)
	w := startWorkflowsOn(t, m, func(c *serveConfig) {
		c.Credential.AWS.S3URL = network.Endpoint
		c.Credential.AWS.S3ReadTimeout = time.Second
		c.Delivery.RequestAttempts, c.Delivery.RequestMaxBackoff = 3, 200*time.Millisecond
		c.Delivery.HungLimit = 4 * time.Second
		c.Delivery.TransientRetries = 4 // not used on a hang
		c.MetricsAddr = "127.0.0.1:0"
	})
	dest := w.destination(t, "hung", &destinationv1.Destination{Format: csvFormat(), SuccessFile: true})
	recs := customerBatches(t, 5000, 1000)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	toxic, err := network.Add(testenv.Blackhole, "downstream", `{"timeout":0}`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // far past the bound: a hang fails here
	defer cancel()
	_, err = deliverclient.DeliverStream(ctx, w.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "out"}, bytes.NewReader(stream),
		deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}})
	got := apierror.FromStatus(err)
	if got.Code != codes.Unavailable || got.Reason != errorsv1.ErrorReason_ERROR_REASON_TRANSIENT || !strings.Contains(got.Message, "did not answer") {
		t.Fatalf("a delivery to a hung S3: %v, want UNAVAILABLE TRANSIENT", err)
	}
	if _, err := w.delivs.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: production}, w.admin); err != nil {
		t.Fatalf("listing beside a hung S3: %v", err)
	}
	if fams, _ := scrape(t, w.r.metrics); sum(fams, "sluice_delivery_reruns_total") != 0 {
		t.Errorf("the delivery ran again into the hang %v times", sum(fams, "sluice_delivery_reruns_total"))
	}
	d, err := w.delivs.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Name: got.Metadata["delivery"]}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	wf := w.workflow(t, d.GetWorkflow())
	network.Remove(toxic)
	resolved, err := w.resolve(ctx, wf, "retry-task")
	if err != nil {
		t.Fatalf("resolving once S3 answers: %v", err)
	}
	for range 600 {
		if resolved, err = w.delivs.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Name: d.GetName()}, w.admin); err != nil || resolved.GetState() == deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED || resolved.GetState() == deliveryv1.DeliveryState_DELIVERY_STATE_FAILED {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resolved.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED || resolved.GetProgress().GetRows() != 5000 {
		t.Fatalf("after S3 answered again: %v, %d rows", resolved.GetState(), resolved.GetProgress().GetRows())
	}
}
