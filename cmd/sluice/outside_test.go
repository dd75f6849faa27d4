package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// A split by size as small as 1 MB (#22: the minimum was 5 MiB): every
// file but the last is about that size, each a single PUT, and the files
// hold every row.
func TestSplitByOneMegabyte(t *testing.T) {
	e := startDelivering(t, nil)
	ctx := context.Background()
	dest := e.destination(t, "small-files", &destinationv1.Destination{Format: csvFormat(), Split: &destinationv1.Split{MaxBytes: 1_000_000}})
	d, err := deliverclient.Deliver(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "out"},
		reader(t, customerBatches(t, 30_000, 5000)), deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
	if err != nil {
		t.Fatal(err)
	}
	var rows int64
	files := 0
	for _, obj := range d.GetObjects() {
		if obj.GetKind() != "data" {
			continue
		}
		files++
		rows += obj.GetRows()
		if obj.GetParts() != 1 || obj.GetBytes() > 1_100_000 {
			t.Errorf("%s: %d bytes in %d parts, want about 1 MB in one", obj.GetKey(), obj.GetBytes(), obj.GetParts())
		}
		b := e.checkObject(t, obj)
		if int64(len(b)) != obj.GetBytes() {
			t.Errorf("%s: read %d bytes, answered %d", obj.GetKey(), len(b), obj.GetBytes())
		}
	}
	if rows != 30_000 || files < 3 {
		t.Fatalf("%d rows in %d files, want 30000 rows in several", rows, files)
	}
}

// A page token names only a delivery the caller was given (#22: tokens
// given to a restricted user named deliveries it may not see), and paging
// still returns every delivery it may see, once, newest first.
func TestPageTokensNameNothingHidden(t *testing.T) {
	e := startDelivering(t, nil)
	ctx := context.Background()
	open := e.destination(t, "open", &destinationv1.Destination{Format: csvFormat()})
	hidden := e.destination(t, "hidden", &destinationv1.Destination{Format: csvFormat(), Access: &destinationv1.Access{AdminOnly: true}})
	visible := map[string]bool{}
	secret := map[string]bool{}
	for i, dest := range []*destinationv1.Destination{hidden, open, hidden, hidden, open, hidden, open, hidden} {
		d, err := deliverclient.Deliver(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: fmt.Sprint("out-", i)},
			reader(t, customerBatches(t, 10, 10)), deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
		if err != nil {
			t.Fatal(err)
		}
		if dest == hidden {
			secret[d.GetName()] = true
		} else {
			visible[d.GetName()] = true
		}
	}
	user := e.r.token("acme")
	for _, size := range []int32{1, 2, 3} {
		var got []string
		token := ""
		for range 20 {
			page, err := e.delivs.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: production, PageSize: size, PageToken: token}, user)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range page.GetDeliveries() {
				got = append(got, d.GetName())
			}
			token = page.GetNextPageToken()
			if token == "" {
				break
			}
			raw, err := base64.RawURLEncoding.DecodeString(token)
			if err != nil {
				t.Fatal(err)
			}
			for name := range visible {
				if strings.Contains(string(raw), deliveryIDOf(name)) {
					t.Fatalf("page size %d: the token is readable: it names a delivery", size)
				}
			}
			for name := range secret {
				if strings.Contains(string(raw), deliveryIDOf(name)) {
					t.Fatalf("page size %d: a token names a delivery the caller may not see", size)
				}
			}
			// A token altered, or not sealed by the service, is refused.
			raw[len(raw)/2] ^= 1
			_, err = e.delivs.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: production, PageSize: size, PageToken: base64.RawURLEncoding.EncodeToString(raw)}, user)
			if got := apierror.FromStatus(err); got.Code != codes.InvalidArgument || got.Fields()["page_token"] == "" {
				t.Fatalf("an altered token: %v, want InvalidArgument on page_token", err)
			}
		}
		if len(got) != len(visible) || !sort.SliceIsSorted(got, func(i, j int) bool { return got[i] > got[j] }) {
			t.Fatalf("page size %d: %d deliveries %v, want the %d visible, newest first", size, len(got), got, len(visible))
		}
		for _, n := range got {
			if !visible[n] {
				t.Fatalf("page size %d: listed %s", size, n)
			}
		}
	}
}

func deliveryIDOf(name string) string { return name[strings.LastIndex(name, "/")+1:] }

// The CLI as #22 found it wanting: a token read from a file rather than
// the command line (where ps shows it), the bytes sent before a failure
// said rather than 0, and an interrupted delivery continued by running the
// same command again with --resume.
func TestCLIResumesAndKeepsItsTokenOffTheCommandLine(t *testing.T) {
	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	r := startServeWith(t, func(c *serveConfig) { c.useMinIO(m) })
	e := &delivering{r: r, m: m, bucket: bucket, admin: r.token("acme", auth.PolicyAdministrator), key: m.RootUser, secret: m.RootPassword,
		dests: destinationv1.NewDestinationServiceClient(r.conns["destination"]), delivs: deliveryv1.NewDeliveryServiceClient(r.conns["delivery"])}
	e.cred = e.credential(t, production)
	token, err := r.users.Mint("cli@acme.test", "acme", []string{auth.PolicyAdministrator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, bin: buildSluice(t), env: append(os.Environ(),
		"SLUICE_CREDENTIAL_ADDR="+r.addrs["credential"], "SLUICE_DESTINATION_ADDR="+r.addrs["destination"], "SLUICE_DELIVERY_ADDR="+r.addrs["delivery"],
		"SLUICE_CONFIG="+filepath.Join(dir, "none.yaml"))}
	if help := c.must(0, "deliver", "--help"); !strings.Contains(help.stdout, "shows in ps") || !strings.Contains(help.stdout, "--token-file") {
		t.Errorf("deliver --help does not say where a token belongs:\n%s", help.stdout)
	}
	c.must(2, "credential", "list") // no token at all: a usage error
	c.must(0, "credential", "list", "--token-file", tokenFile)
	c.env = append(c.env, "SLUICE_TOKEN_FILE="+tokenFile)
	c.must(0, "credential", "list")

	recs := customerBatches(t, 20_000, 2000)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	file := filepath.Join(dir, "customers.arrows")
	if err := os.WriteFile(file, stream, 0o600); err != nil {
		t.Fatal(err)
	}
	// A failure says what was sent before it.
	typo := e.destination(t, "typo", &destinationv1.Destination{Format: csvFormat(), BucketOverride: "no-such-bucket-" + bucket})
	failed := c.must(4, "deliver", file, "--destination", typo.GetName(), "--progress", "lines")
	if !strings.Contains(failed.stderr, "before the delivery failed") || strings.Contains(failed.stderr, "sent 0.0 MB") {
		t.Errorf("the summary after a failure:\n%s", failed.stderr)
	}
	// A delivery whose stream broke halfway, continued by the CLI.
	dest := e.destination(t, "resumed", &destinationv1.Destination{Format: csvFormat()})
	ctx, cancel := context.WithCancel(context.Background())
	call, err := e.delivs.Deliver(ctx, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_Start{Start: &deliveryv1.DeliveryStart{Destination: dest.GetName(), IdempotencyKey: "nightly-1", OutputName: "out"}}}); err != nil {
		t.Fatal(err)
	}
	if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: stream[:len(stream)/2]}}); err != nil {
		t.Fatal(err)
	}
	var interrupted *deliveryv1.Delivery
	for range 100 {
		list, err := e.delivs.ListDeliveries(context.Background(), &deliveryv1.ListDeliveriesRequest{Parent: production}, e.admin)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list.GetDeliveries() {
			if d.GetIdempotencyKey() == "nightly-1" && d.GetStagedInput().GetBytes() > 0 {
				interrupted = d
			}
		}
		if interrupted != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel() // the connection breaks
	for range 100 {
		d, err := e.delivs.GetDelivery(context.Background(), &deliveryv1.GetDeliveryRequest{Name: interrupted.GetName()}, e.admin)
		if err == nil && d.GetStagedInput().GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.must(2, "deliver", file, "--destination", dest.GetName(), "--resume", "3") // no key: a usage error
	out := c.must(0, "deliver", file, "--destination", dest.GetName(), "--idempotency-key", "nightly-1", "--resume", "3", "-o", "json", "--progress", "none")
	var landed map[string]any
	c.json(out, &landed)
	if landed["name"] != interrupted.GetName() || landed["state"] != "DELIVERY_STATE_SUCCEEDED" {
		t.Fatalf("resumed: %v, want %s succeeded", landed, interrupted.GetName())
	}
	var rows int64
	d, err := e.delivs.GetDelivery(context.Background(), &deliveryv1.GetDeliveryRequest{Name: interrupted.GetName()}, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range d.GetObjects() {
		if obj.GetKind() == "data" {
			rows += int64(len(readCSVRows(t, e.checkObject(t, obj)))) - 1
		}
	}
	if rows != 20_000 {
		t.Fatalf("the resumed delivery landed %d rows, want 20000", rows)
	}
}

func readCSVRows(t *testing.T, b []byte) [][]string {
	t.Helper()
	records, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return records
}

// A 3 MiB value that is not valid UTF-8 (#22: it came back whole in the
// error and the logs; #23: its delivery then stayed RECEIVING for good)
// fails the delivery with ErrorInfo naming it, the error never quoting
// the value, and the stored delivery FAILED with nothing kept.
func TestInvalidUTF8FailsTheDeliveryWithoutItsValue(t *testing.T) {
	e := startDelivering(t, nil)
	ctx := context.Background()
	dest := e.destination(t, "utf", &destinationv1.Destination{Format: csvFormat()})
	schema := arrow.NewSchema([]arrow.Field{{Name: "note", Type: arrow.BinaryTypes.String}}, nil)
	bin := array.NewBinaryBuilder(memory.DefaultAllocator, arrow.BinaryTypes.Binary)
	bin.AppendValues([][]byte{[]byte("ok"), append([]byte("SECRET"+strings.Repeat("x", 3<<20)), 0xff)}, nil)
	bd := bin.NewArray().Data()
	notes := array.MakeFromData(array.NewData(arrow.BinaryTypes.String, bd.Len(), bd.Buffers(), nil, 0, 0))
	rec := array.NewRecordBatch(schema, []arrow.Array{notes}, 2)
	defer rec.Release()
	_, err := deliverclient.DeliverStream(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), IdempotencyKey: "utf-1"},
		bytes.NewReader(ipcBytes(t, schema, rec)), deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
	got := apierror.FromStatus(err)
	if got.Code != codes.InvalidArgument || got.Reason != errorsv1.ErrorReason_ERROR_REASON_INVALID_ARROW_STREAM || got.Metadata["delivery"] == "" {
		t.Fatalf("got %v (%+v), want INVALID_ARROW_STREAM naming the delivery", err, got.Metadata)
	}
	if strings.Contains(err.Error(), "SECRET") || len(err.Error()) > 1000 {
		t.Fatalf("the error quotes the value (%d bytes)", len(err.Error()))
	}
	d, err := e.delivs.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Name: got.Metadata["delivery"]}, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	if d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_FAILED || d.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED || strings.Contains(d.GetError().GetMessage(), "SECRET") {
		t.Fatalf("stored: %v, input %v, error %.200q", d.GetState(), d.GetStagedInput().GetState(), d.GetError().GetMessage())
	}
}

// A resolution whose kept input cannot be read back (#23, item 1: the
// delivery and its workflow stayed RESOLVING for good, nothing claimable)
// ends FAILED with STAGED_INPUT_UNREADABLE: the workflow failed again, a
// notification raised; the copy being gone, nothing is offered to run it
// again and nothing counts as kept.
func TestResolutionWhoseInputCannotBeReadEnds(t *testing.T) {
	m := testenv.SharedMinIO(t)
	w := startWorkflowsOn(t, m, nil)
	w.mayUseAnyBucket(t)
	ctx := context.Background()
	typo := w.destination(t, "unreadable", &destinationv1.Destination{Format: csvFormat(), BucketOverride: "no-such-bucket-" + w.bucket})
	recs := customerBatches(t, 2000, 500)
	failed := w.failedDelivery(t, typo.GetName(), ipcBytes(t, recs[0].Schema(), recs...), errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND)
	if failed.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD {
		t.Fatalf("input %v, want HELD", failed.GetStagedInput().GetState())
	}
	// The kept copy goes missing (a staging store losing it).
	staged, _ := filepath.Glob(filepath.Join(w.r.dataDir, "staging", deliveryIDOf(failed.GetName())+"*"))
	if len(staged) == 0 {
		t.Fatal("no staged copy to lose")
	}
	for _, f := range staged {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	notesBefore, err := w.flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.resolve(ctx, w.workflow(t, failed.GetWorkflow()), "retry-task")
	if got := apierror.FromStatus(err); got.Reason != errorsv1.ErrorReason_ERROR_REASON_STAGED_INPUT_UNREADABLE {
		t.Fatalf("resolving with the kept input gone: %v, want STAGED_INPUT_UNREADABLE", err)
	}
	d, err := w.delivs.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Name: failed.GetName()}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	if d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_FAILED || d.GetError().GetReason() != "STAGED_INPUT_UNREADABLE" {
		t.Fatalf("the delivery after the failed resolution: %v %v", d.GetState(), d.GetError())
	}
	wf := w.workflow(t, failed.GetWorkflow())
	if wf.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_FAILED || len(wf.GetActions()) != 0 || d.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED {
		t.Fatalf("the workflow after the failed resolution: %v with %d actions", wf.GetState(), len(wf.GetActions()))
	}
	notes, err := w.flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production}, w.admin)
	if err != nil || len(notes.GetNotifications()) <= len(notesBefore.GetNotifications()) {
		t.Fatalf("no notification raised for the failed resolution: %v", err)
	}
}
