package delivery

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/staging"
	"github.com/sluicehq/sluice/services/delivery/store"
)

const production = "tenants/acme/environments/production"

var timeNow = time.Now

// bundle is a delivery service on a real SQLite store and directory
// staging, with fake peers: a destination that resolves, and minting that
// answers what the test says.
type bundle struct {
	s      *Service
	dest   *destinationv1.Destination
	dests  *fakeDestinations
	access *fakeAccess
}

type fakeDestinations struct {
	destinationv1.DestinationServiceClient
	dest     *destinationv1.Destination
	recorded atomic.Int32
}

func (f *fakeDestinations) ResolveDestination(_ context.Context, in *destinationv1.ResolveDestinationRequest, _ ...grpc.CallOption) (*destinationv1.Destination, error) {
	if in.GetName() != f.dest.GetName() {
		return nil, apierror.NotFound(in.GetName())
	}
	return proto.Clone(f.dest).(*destinationv1.Destination), nil
}

func (f *fakeDestinations) RecordDelivery(context.Context, *destinationv1.RecordDeliveryRequest, ...grpc.CallOption) (*destinationv1.Destination, error) {
	f.recorded.Add(1)
	return f.dest, nil
}

// fakeAccess mints access to a bucket on an S3 endpoint nobody listens
// on, or refuses with err: these tests settle before a byte goes to S3.
type fakeAccess struct{ err atomic.Pointer[error] }

func (f *fakeAccess) MintAccess(context.Context, *credentialv1.MintAccessRequest, ...grpc.CallOption) (*credentialv1.TemporaryAccess, error) {
	if err := *f.err.Load(); err != nil {
		return nil, err
	}
	return &credentialv1.TemporaryAccess{AccessKeyId: "AKIATEST", SecretAccessKey: "secret", SessionToken: "token", Bucket: "unreachable", Region: "us-east-1"}, nil
}

func newBundle(t *testing.T) *bundle {
	t.Helper()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DatabaseDSN = "sqlite:" + filepath.Join(dir, "delivery.db")
	cfg.StagingDir = filepath.Join(dir, "staging")
	cfg.RequestAttempts, cfg.TransientRetries = 1, 0
	cfg.Instance = "test-instance"
	cfg.AWS.S3URL, cfg.AWS.S3PathStyle = "http://127.0.0.1:1", true
	b := &bundle{
		dest: &destinationv1.Destination{Name: production + "/destinations/d1", Credential: production + "/credentials/c1",
			Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{}}}},
		access: &fakeAccess{},
	}
	b.deny(nil)
	b.dests = &fakeDestinations{dest: b.dest}
	s, err := New(context.Background(), cfg, Peers{Destinations: b.dests, Access: b.access})
	if err != nil {
		t.Fatal(err)
	}
	s.log = slog.New(slog.DiscardHandler)
	t.Cleanup(func() { s.Close() })
	b.s = s
	return b
}

func (b *bundle) deny(err error) { b.access.err.Store(&err) }

var roleRefused = apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_ROLE_NOT_ASSUMABLE, "the role's trust policy does not allow Sluice")

// refused answers a bundle whose credential's role cannot be assumed.
func refused(t *testing.T) *bundle {
	b := newBundle(t)
	b.deny(roleRefused)
	return b
}

// liveSource is a caller's stream in memory: it stages what it reads, as
// recvReader does, and ends with cut (io.EOF: the caller closed its side).
type liveSource struct {
	r     io.Reader
	cut   error
	prog  *progress
	w     staging.Writer
	ended bool
}

func (l *liveSource) count(p *progress)      { l.prog = p }
func (l *liveSource) stage(w staging.Writer) { l.w = w }
func (l *liveSource) drop()                  {}
func (l *liveSource) whole() bool            { return l.ended }
func (l *liveSource) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.prog.bytesIn.Add(int64(n))
	if n > 0 {
		if serr := staged(l.w, l.prog, p[:n]); serr != nil {
			return 0, serr
		}
	}
	if errors.Is(err, io.EOF) {
		if l.cut != nil && l.cut != io.EOF {
			return n, &streamBroke{l.cut}
		}
		if l.w != nil {
			if err := l.w.Flush(); err != nil {
				return n, err
			}
		}
		l.ended = true
	}
	return n, err
}

func idStream(t *testing.T, rows int) []byte {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}}, nil)
	bld := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer bld.Release()
	for i := range rows {
		bld.Field(0).(*array.Int64Builder).Append(int64(i))
	}
	rec := bld.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (b *bundle) deliver(t *testing.T, key string, in []byte, cut error) (*deliveryv1.Delivery, *apierror.Error) {
	t.Helper()
	_, err := b.s.deliver(as("acme"), &deliveryv1.DeliveryStart{Destination: b.dest.GetName(), IdempotencyKey: key}, &liveSource{r: bytes.NewReader(in), cut: cut})
	if err == nil {
		t.Fatal("the delivery succeeded without S3")
	}
	e := apierror.FromStatus(err)
	d := b.get(t, e.Metadata["delivery"])
	return d, e
}

func (b *bundle) get(t *testing.T, name string) *deliveryv1.Delivery {
	t.Helper()
	if name == "" {
		t.Fatal("the error names no delivery")
	}
	d, err := b.s.store.Deliveries.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// settled checks what every settled run leaves: the delivery in phase
// want, its workflow's state with it, no lease row, nothing live, and one
// notification per failure.
func (b *bundle) settled(t *testing.T, d *deliveryv1.Delivery, want phase, notifications int) *deliveryv1.Workflow {
	t.Helper()
	ctx := context.Background()
	if got := phaseOf(d); got != want {
		t.Fatalf("delivery %s (%s, input %s, error %v), want %s", got, d.GetState(), d.GetStagedInput().GetState(), d.GetError(), want)
	}
	w, err := b.s.store.Workflows.Get(ctx, d.GetWorkflow())
	if err != nil {
		t.Fatal(err)
	}
	if w.GetState() != shapes[want].workflow {
		t.Errorf("workflow %s, want %s", w.GetState(), shapes[want].workflow)
	}
	if held, err := b.s.store.Leased(ctx, "delivery:"+d.GetName()); err != nil || held {
		t.Errorf("a lease row is left (%v)", err)
	}
	if b.s.live(d.GetName()) {
		t.Error("the delivery is still marked running in this process")
	}
	ns, _, err := b.s.store.Notifications.List(ctx, production, "", 100, resourcestore.Where{Column: store.DestinationColumn, Value: b.dest.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, x := range ns {
		if x.GetDelivery() == d.GetName() {
			n++
		}
	}
	if n != notifications {
		t.Errorf("%d notifications for the delivery, want %d", n, notifications)
	}
	return w
}

func actionIDs(w *deliveryv1.Workflow) []string {
	var ids []string
	for _, a := range w.GetActions() {
		ids = append(ids, a.GetId())
	}
	return ids
}

// Deliver: each way a caller's stream ends settles by the one rule.
func TestDeliverOutcomes(t *testing.T) {
	b := newBundle(t)
	good := idStream(t, 100)
	// gRPC's own answer to a message over the server's limit.
	tooLarge := status.Error(codes.ResourceExhausted, "grpc: received message larger than max (9437184 vs. 8388608)")
	cases := []struct {
		name    string
		key     string
		in      []byte
		cut     error
		want    phase
		reason  errorsv1.ErrorReason
		actions bool
		input   deliveryv1.StagedInputState
	}{
		{"garbage", "", []byte("id,email\n1,a@example.com\n"), nil, phaseFailed, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARROW_STREAM, false, deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED},
		{"no end marker, no key", "", good[:len(good)-8], nil, phaseFailed, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARROW_STREAM, false, deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED},
		{"no end marker, a key", "k1", good[:len(good)-8], nil, phaseInterrupted, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARROW_STREAM, false, deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED},
		{"truncated, a key", "k2", good[:len(good)-20], nil, phaseInterrupted, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARROW_STREAM, false, deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED},
		{"no bytes, a key", "k3", nil, nil, phaseInterrupted, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARROW_STREAM, false, deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED},
		{"the stream broke, a key", "k4", good[:40], context.Canceled, phaseInterrupted, errorsv1.ErrorReason_ERROR_REASON_CANCELLED, false, deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED},
		{"the stream broke, no key", "", good[:40], context.Canceled, phaseFailed, errorsv1.ErrorReason_ERROR_REASON_CANCELLED, false, deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED},
		{"a message over the limit, no key", "", good[:40], tooLarge, phaseFailed, errorsv1.ErrorReason_ERROR_REASON_MESSAGE_TOO_LARGE, false, deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED},
		{"a message over the limit, a key", "k5", good[:40], tooLarge, phaseInterrupted, errorsv1.ErrorReason_ERROR_REASON_MESSAGE_TOO_LARGE, false, deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED},
		{"access refused", "", good, nil, phaseFailedKept, errorsv1.ErrorReason_ERROR_REASON_ROLE_NOT_ASSUMABLE, true, deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b.deny(nil)
			if c.reason == errorsv1.ErrorReason_ERROR_REASON_ROLE_NOT_ASSUMABLE {
				b.deny(roleRefused)
			}
			d, e := b.deliver(t, c.key, c.in, c.cut)
			notes := 1
			if c.want == phaseInterrupted {
				notes = 0
			}
			w := b.settled(t, d, c.want, notes)
			if e.Reason != c.reason {
				t.Errorf("reason %s, want %s", apierror.ReasonName(e.Reason), apierror.ReasonName(c.reason))
			}
			if d.GetStagedInput().GetState() != c.input {
				t.Errorf("input %s, want %s", d.GetStagedInput().GetState(), c.input)
			}
			if got := len(w.GetActions()) > 0; got != c.actions {
				t.Errorf("actions %v, want some: %v", actionIDs(w), c.actions)
			}
			if c.want == phaseInterrupted && e.Metadata["resume_offset"] != strconv.Itoa(len(c.in)) {
				t.Errorf("resume_offset %q, want %d", e.Metadata["resume_offset"], len(c.in))
			}
			if files, _ := filepath.Glob(filepath.Join(b.s.cfg.StagingDir, deliveryID(d.GetName())+"*")); (len(files) > 0) != (c.input != deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED) {
				t.Errorf("staged files %v with input %s", files, c.input)
			}
		})
	}
}

// A resume whose offset is wrong, or whose held input cannot be opened,
// leaves the delivery resumable as it was.
func TestResumeOutcomes(t *testing.T) {
	b := newBundle(t)
	good := idStream(t, 100)
	d, _ := b.deliver(t, "resume", good[:len(good)-8], nil)
	b.settled(t, d, phaseInterrupted, 0)
	held := d.GetStagedInput().GetBytes()
	resume := func(offset int64) *apierror.Error {
		_, err := b.s.deliver(as("acme"), &deliveryv1.DeliveryStart{Destination: b.dest.GetName(), IdempotencyKey: "resume", ResumeOffset: offset},
			&liveSource{r: bytes.NewReader(good[offset:])})
		return apierror.FromStatus(err)
	}
	if e := resume(held - 1); e.Reason != errorsv1.ErrorReason_ERROR_REASON_RESUME_OFFSET_MISMATCH || e.Metadata["resume_offset"] != strconv.FormatInt(held, 10) {
		t.Fatalf("a wrong offset: %v %v", e, e.Metadata)
	}
	b.settled(t, b.get(t, d.GetName()), phaseInterrupted, 0)
	// The held copy lost: the resume cannot start, and the delivery stays
	// resumable for another try (or its window ends).
	if err := b.s.staging.Delete(context.Background(), deliveryID(d.GetName())); err != nil {
		t.Fatal(err)
	}
	e := resume(held)
	if e.Code == codes.OK || e.Metadata["delivery"] != d.GetName() {
		t.Fatalf("resuming without the held copy: %v %v", e, e.Metadata)
	}
	after := b.get(t, d.GetName())
	b.settled(t, after, phaseInterrupted, 0)
	if after.GetStagedInput().GetBytes() != held {
		t.Errorf("held %d bytes after the failed resume, want %d", after.GetStagedInput().GetBytes(), held)
	}
}

// The stuck resolution (#23): a failed delivery whose input is recorded as
// held but whose staged copy cannot be opened ends FAILED saying so, with
// its workflow failed, a notification raised, and nothing live or leased.
func TestResolutionWhoseKeptInputIsGone(t *testing.T) {
	b := refused(t)
	d, _ := b.deliver(t, "", idStream(t, 100), nil)
	w := b.settled(t, d, phaseFailedKept, 1)
	if err := b.s.staging.Delete(context.Background(), deliveryID(d.GetName())); err != nil {
		t.Fatal(err)
	}
	_, err := b.s.ResolveWorkflow(as("acme"), &deliveryv1.ResolveWorkflowRequest{Name: w.GetName(), ActionId: actionRetryTask})
	e := apierror.FromStatus(err)
	if e.Reason != errorsv1.ErrorReason_ERROR_REASON_STAGED_INPUT_UNREADABLE || e.Metadata["delivery"] != d.GetName() {
		t.Fatalf("resolving with the kept input gone: %v %v", err, e.Metadata)
	}
	after := b.get(t, d.GetName())
	w = b.settled(t, after, phaseFailed, 2)
	if after.GetError().GetReason() != "STAGED_INPUT_UNREADABLE" || len(w.GetActions()) != 0 {
		t.Errorf("after: error %v, actions %v", after.GetError(), actionIDs(w))
	}
	if len(w.GetHistory()) != 1 || w.GetCurrentRun().GetActionId() != actionRetryTask {
		t.Errorf("the workflow's runs: history %d, current %v", len(w.GetHistory()), w.GetCurrentRun())
	}
}

// A resolution whose cause is still there fails again with the input
// kept, saying so; a second resolution may follow.
func TestResolutionWhoseCauseRemains(t *testing.T) {
	b := refused(t)
	d, _ := b.deliver(t, "", idStream(t, 100), nil)
	w := b.settled(t, d, phaseFailedKept, 1)
	_, err := b.s.ResolveWorkflow(as("acme"), &deliveryv1.ResolveWorkflowRequest{Name: w.GetName(), ActionId: actionRestart})
	if apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_ROLE_NOT_ASSUMABLE {
		t.Fatalf("resolving while the cause remains: %v", err)
	}
	w = b.settled(t, b.get(t, d.GetName()), phaseFailedKept, 2)
	if st := failedStep(w.GetSteps()); st == nil || st.GetStep() != stepGetAccess || !bytes.Contains([]byte(st.GetError().GetMessage()), []byte("still there")) {
		t.Errorf("failed step %v", st)
	}
	if w.GetCurrentRun().GetActionId() != actionRestart || len(actionIDs(w)) == 0 {
		t.Errorf("run %v, actions %v", w.GetCurrentRun(), actionIDs(w))
	}
}

// Takeover only claims: a receiving delivery whose holder stopped is left
// for its caller to resume (with a key) or failed (without one); an
// uploading one runs again from its kept input, and when that input is
// gone ends FAILED saying so, with nothing leased.
func TestTakeoverOutcomes(t *testing.T) {
	b := refused(t)
	ctx := context.Background()
	orphan := func(t *testing.T, p phase, key string) *deliveryv1.Delivery {
		d := b.stored(t, p)
		if key != "" {
			var err error
			if d, err = b.s.store.Deliveries.Update(ctx, d.GetName(), "", func(sd *deliveryv1.Delivery) error {
				sd.IdempotencyKey = key
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		w, err := b.s.staging.Create(ctx, deliveryID(d.GetName()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(idStream(t, 10)[:64]); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		l := b.s.work.Take(deliveryWork(d.GetName(), kindDelivery))
		if _, err := b.s.store.Deliveries.Update(ctx, d.GetName(), "", func(*deliveryv1.Delivery) error { return nil }, l.Hold); err != nil {
			t.Fatal(err)
		}
		b.s.takeOver(ctx, l, b.s.log)
		return b.get(t, d.GetName())
	}
	t.Run("receiving, with a key", func(t *testing.T) {
		d := orphan(t, phaseReceiving, "k")
		b.settled(t, d, phaseInterrupted, 0)
		if d.GetStagedInput().GetBytes() != 64 || d.GetServiceInstance() != "test-instance" {
			t.Errorf("input %v, instance %q", d.GetStagedInput(), d.GetServiceInstance())
		}
	})
	t.Run("receiving, no key", func(t *testing.T) {
		d := orphan(t, phaseReceiving, "")
		b.settled(t, d, phaseFailed, 1)
		if d.GetError().GetReason() != "SERVICE_STOPPED" {
			t.Errorf("error %v", d.GetError())
		}
	})
	t.Run("uploading, its access refused", func(t *testing.T) {
		d := orphan(t, phaseUploading, "")
		w := b.settled(t, d, phaseFailedKept, 1)
		if d.GetError().GetReason() != "ROLE_NOT_ASSUMABLE" || len(w.GetActions()) == 0 {
			t.Errorf("error %v, actions %v", d.GetError(), actionIDs(w))
		}
	})
	t.Run("uploading, its kept input gone", func(t *testing.T) {
		d := b.stored(t, phaseUploading)
		l := b.s.work.Take(deliveryWork(d.GetName(), kindDelivery))
		if _, err := b.s.store.Deliveries.Update(ctx, d.GetName(), "", func(*deliveryv1.Delivery) error { return nil }, l.Hold); err != nil {
			t.Fatal(err)
		}
		b.s.takeOver(ctx, l, b.s.log)
		d = b.get(t, d.GetName())
		b.settled(t, d, phaseFailed, 1)
		if d.GetError().GetReason() != "STAGED_INPUT_UNREADABLE" {
			t.Errorf("error %v", d.GetError())
		}
	})
}

// CancelDelivery: a failed delivery is discarded (its kept input dropped,
// its workflow closed, its notifications acknowledged); again changes
// nothing; a succeeded one is refused; a running one stops at once and
// answers its caller CANCELLED.
func TestCancelOutcomes(t *testing.T) {
	b := refused(t)
	ctx := as("acme")
	t.Run("a failed delivery is discarded", func(t *testing.T) {
		d, _ := b.deliver(t, "", idStream(t, 100), nil)
		b.settled(t, d, phaseFailedKept, 1)
		got, err := b.s.CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: d.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		w := b.settled(t, got, phaseCancelled, 1)
		if got.GetError().GetReason() != "ROLE_NOT_ASSUMABLE" || len(w.GetActions()) != 0 || got.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED {
			t.Errorf("discarded: error %v, actions %v, input %v", got.GetError(), actionIDs(w), got.GetStagedInput())
		}
		if _, err := b.s.staging.Size(context.Background(), deliveryID(d.GetName())); !errors.Is(err, staging.ErrNotFound) {
			t.Errorf("its staged input stays: %v", err)
		}
		ns, _, _ := b.s.store.Notifications.List(context.Background(), production, "", 100)
		for _, n := range ns {
			if n.GetDelivery() == d.GetName() && !n.GetAcknowledged() {
				t.Errorf("notification %s still waits for someone", n.GetName())
			}
		}
		again, err := b.s.CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: d.GetName()})
		if err != nil || again.GetEtag() != got.GetEtag() {
			t.Errorf("cancelling twice: %v, etag %s then %s", err, got.GetEtag(), again.GetEtag())
		}
		if _, err := b.s.ResolveWorkflow(ctx, &deliveryv1.ResolveWorkflowRequest{Name: d.GetWorkflow(), ActionId: actionRestart}); apierror.FromStatus(err).Code != codes.FailedPrecondition {
			t.Errorf("resolving a discarded delivery: %v", err)
		}
	})
	t.Run("a succeeded delivery is refused", func(t *testing.T) {
		d := b.stored(t, phaseSucceeded)
		_, err := b.s.CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: d.GetName()})
		if apierror.FromStatus(err).Code != codes.FailedPrecondition {
			t.Fatalf("got %v", err)
		}
		b.settled(t, b.get(t, d.GetName()), phaseSucceeded, 0)
	})
	t.Run("an interrupted delivery", func(t *testing.T) {
		b.deny(nil)
		defer b.deny(roleRefused)
		good := idStream(t, 100)
		d, _ := b.deliver(t, "cancel-me", good[:len(good)-8], nil)
		// Its key was recorded, and no byte reached S3 here (none
		// listens): nothing to take back.
		if err := b.s.store.ForgetWrites(context.Background(), d.GetName()); err != nil {
			t.Fatal(err)
		}
		got, err := b.s.CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: d.GetName(), KeepInput: true})
		if err != nil {
			t.Fatal(err)
		}
		b.settled(t, got, phaseCancelled, 0)
		// Its key answers the cancellation, and nothing resumes it.
		_, err = b.s.deliver(ctx, &deliveryv1.DeliveryStart{Destination: b.dest.GetName(), IdempotencyKey: "cancel-me", ResumeOffset: d.GetStagedInput().GetBytes()},
			&liveSource{r: bytes.NewReader(good[d.GetStagedInput().GetBytes():])})
		if apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_NOTHING_TO_RESUME {
			t.Errorf("resuming a cancelled delivery: %v", err)
		}
	})
	t.Run("a running delivery stops", func(t *testing.T) {
		b.deny(nil)
		defer b.deny(roleRefused)
		good := idStream(t, 100)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := b.s.deliver(ctx, &deliveryv1.DeliveryStart{Destination: b.dest.GetName()}, &liveSource{r: pr})
			done <- err
		}()
		if _, err := pw.Write(good[:200]); err != nil {
			t.Fatal(err)
		}
		var running *deliveryv1.Delivery
		for range 200 {
			list, _, _ := b.s.store.Deliveries.List(context.Background(), production, "", 1000)
			for _, d := range list {
				if phaseOf(d) == phaseReceiving && b.s.live(d.GetName()) {
					running = d
				}
			}
			if running != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if running == nil {
			t.Fatal("the delivery never ran")
		}
		answered := make(chan *deliveryv1.Delivery, 1)
		go func() {
			got, err := b.s.CancelDelivery(ctx, &deliveryv1.CancelDeliveryRequest{Name: running.GetName()})
			if err != nil {
				t.Error(err)
			}
			answered <- got
		}()
		// The caller's next message meets the cancel.
		for req, _ := b.s.store.CancelRequested(context.Background(), running.GetName()); req == nil; req, _ = b.s.store.CancelRequested(context.Background(), running.GetName()) {
			time.Sleep(10 * time.Millisecond)
		}
		go func() { _, _ = pw.Write(good[200:]); pw.Close() }()
		err := <-done
		if e := apierror.FromStatus(err); e.Reason != errorsv1.ErrorReason_ERROR_REASON_CANCELLED || e.Metadata["delivery"] != running.GetName() {
			t.Fatalf("the caller got %v", err)
		}
		got := <-answered
		b.settled(t, got, phaseCancelled, 0)
		if req, _ := b.s.store.CancelRequested(context.Background(), running.GetName()); req != nil {
			t.Error("the cancel request outlived the cancel")
		}
	})
}
