package delivery

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/filename"
	"github.com/sluicehq/sluice/pkg/lease"
	"github.com/sluicehq/sluice/pkg/logging"
	"github.com/sluicehq/sluice/pkg/outputspec"
	"github.com/sluicehq/sluice/pkg/resourcename"
	"github.com/sluicehq/sluice/pkg/staging"
	"github.com/sluicehq/sluice/pkg/validate"
	"github.com/sluicehq/sluice/services/delivery/store"
)

// stalledAfter is how long a running delivery may go without storing its
// progress (it does every ProgressInterval, and at least every heartbeat)
// before a second caller with its idempotency key stops waiting for it.
const (
	heartbeat    = 10 * time.Second
	stalledAfter = 6 * heartbeat
)

// checkStart validates the opening message.
func checkStart(start *deliveryv1.DeliveryStart) error {
	var v apierror.Violations
	if !validate.Present(&v, "start", start != nil) {
		return v.Err()
	}
	validate.Name(&v, "start.destination", start.GetDestination(), "destinations")
	validate.Text(&v, "start.idempotency_key", start.GetIdempotencyKey(), 128, false)
	if on := start.GetOutputName(); on != "" {
		if err := outputspec.CheckOutputName(on); err != nil {
			v.Add("start.output_name", "%v", err)
		}
	}
	if len(start.GetLabels()) > 32 {
		v.Add("start.labels", "must be at most 32; got %d", len(start.GetLabels()))
	}
	for k, val := range start.GetLabels() {
		if k == "" {
			v.Add("start.labels", "keys must not be empty")
		}
		validate.Text(&v, "start.labels["+k+"]", k, 63, false)
		validate.Text(&v, "start.labels["+k+"]", val, 256, false)
	}
	return v.Err()
}

// newID answers a delivery id that sorts by creation time, so that name
// order is time order: d20261125-101500-123-k3j9x2.
func newID(t time.Time) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[b[i]%32]
	}
	t = t.UTC()
	return fmt.Sprintf("d%s-%03d-%s", t.Format("20060102-150405"), t.Nanosecond()/1e6, b)
}

// source is where a delivery's Arrow IPC bytes come from: a Deliver stream
// or a Flight DoPut. It counts the bytes it reads into prog, and stages
// each message it receives before the pipeline sees it.
type source interface {
	io.Reader
	count(prog *progress)
	stage(w staging.Writer)
	// drop discards bytes received but not yet read: a retry reads them
	// back from staging.
	drop()
	// whole reports whether the caller's stream reached its end, so that
	// all of it is staged, whatever an attempt read of it.
	whole() bool
}

// streamBroke is a caller's stream that failed before its end: the caller
// went away or the network dropped, not the data's fault. With staging, the
// delivery waits to be resumed.
type streamBroke struct{ err error }

func (e *streamBroke) Error() string { return "the stream broke: " + e.err.Error() }
func (e *streamBroke) Unwrap() error { return e.err }

// stagingFailed is staging refusing or failing a write.
type stagingFailed struct{ err error }

func (e *stagingFailed) Error() string { return "stage the input: " + e.err.Error() }
func (e *stagingFailed) Unwrap() error { return e.err }

// staged writes b to w, when staging, and counts it.
func staged(w staging.Writer, prog *progress, b ...[]byte) error {
	if w == nil {
		return nil
	}
	for _, x := range b {
		if _, err := w.Write(x); err != nil {
			return &stagingFailed{err}
		}
	}
	prog.staged.Store(w.Staged())
	return nil
}

// recvReader reads the Arrow IPC bytes of a Deliver stream, one message at
// a time: while the pipeline does not read, Recv is not called and gRPC
// flow control holds the sender.
type recvReader struct {
	stream deliveryv1.DeliveryService_DeliverServer
	buf    []byte
	prog   *progress
	w      staging.Writer
	ended  bool
	streamUse
}

func (r *recvReader) count(prog *progress)   { r.prog = prog }
func (r *recvReader) whole() bool            { return r.ended }
func (r *recvReader) stage(w staging.Writer) { r.w = w }
func (r *recvReader) drop()                  { r.buf = nil; r.uncharge() }

func (r *recvReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		r.uncharge()
		if r.ended {
			return 0, io.EOF
		}
		msg, err := recvPaced(r.pace, r.stream.Recv, func(m *deliveryv1.DeliverRequest) int { return len(m.GetArrowIpc()) })
		var broke *streamBroke
		if errors.As(err, &broke) {
			return 0, err // interrupted for idling
		}
		if errors.Is(err, io.EOF) {
			// The caller closed its side: what it sent is made durable
			// before the pipeline learns the stream is whole.
			if r.w != nil {
				if err := r.w.Flush(); err != nil {
					return 0, &stagingFailed{err}
				}
				r.prog.staged.Store(r.w.Staged())
			}
			r.ended = true
			return 0, io.EOF
		}
		if err != nil {
			return 0, &streamBroke{err}
		}
		if msg.GetStart() != nil {
			var v apierror.Violations
			v.Add("start", "only the first message may be a DeliveryStart")
			return 0, v.Err()
		}
		r.buf = msg.GetArrowIpc()
		if err := r.charge(int64(len(r.buf))); err != nil {
			r.buf = nil
			return 0, err
		}
		r.prog.bytesIn.Add(int64(len(r.buf)))
		if err := staged(r.w, r.prog, r.buf); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// Deliver streams one delivery: see the proto. The delivery is stored
// from the moment the caller's right to the destination is confirmed, so
// that every attempt, failed ones included, can be looked up.
func (s *Service) Deliver(stream deliveryv1.DeliveryService_DeliverServer) error {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		var v apierror.Violations
		v.Add("start", "is required: the first message must be a DeliveryStart")
		return v.Err()
	}
	if err != nil {
		return err
	}
	d, err := s.deliver(stream.Context(), first.GetStart(), &recvReader{stream: stream, streamUse: s.streamUse(stream.Context())})
	if err != nil {
		return err
	}
	return stream.SendAndClose(d)
}

// deliver runs one delivery from its start and its source, for Deliver and
// for Flight's DoPut alike.
func (s *Service) deliver(ctx context.Context, start *deliveryv1.DeliveryStart, src source) (*deliveryv1.Delivery, error) {
	if err := checkStart(start); err != nil {
		return nil, err
	}
	dn, _ := resourcename.Parse(start.GetDestination(), "destinations")
	if err := auth.Visible(ctx, dn.Tenant, start.GetDestination()); err != nil {
		return nil, err
	}
	release, err := s.admission.admit(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	dest, err := s.peers.Destinations.ResolveDestination(ctx, &destinationv1.ResolveDestinationRequest{Name: start.GetDestination()})
	if err != nil {
		return nil, err
	}
	if start.GetResumeOffset() < 0 {
		var v apierror.Violations
		v.Add("start.resume_offset", "must not be negative")
		return nil, v.Err()
	}
	if start.GetResumeOffset() > 0 && start.GetIdempotencyKey() == "" {
		var v apierror.Violations
		v.Add("start.idempotency_key", "is required to resume: it names the interrupted delivery")
		return nil, v.Err()
	}
	d, l, err := s.begin(ctx, dn.Parent.String(), start)
	if errors.Is(err, apierror.ErrAlreadyExists) {
		return s.rejoin(ctx, dn.Parent.String(), start, dest, src)
	}
	if err != nil {
		return nil, err
	}
	// The delivery is this replica's work until it ends: were the process
	// to die, another takes it over once the lease runs out.
	ctx, h := s.holding(ctx, l)
	defer h.done()
	if start.GetResumeOffset() > 0 {
		return nil, s.abandon(ctx, d, apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_NOTHING_TO_RESUME,
			"no interrupted delivery holds this idempotency key: start from offset 0").With("resume_offset", "0"))
	}
	w, err := s.startStaging(ctx, d)
	if err != nil {
		return nil, s.abandon(ctx, d, err)
	}
	return s.run(ctx, d, dest, src, w)
}

// begin stores a new delivery in RECEIVING, with its workflow and the
// lease on running it, or answers ErrAlreadyExists when its idempotency
// key is taken.
func (s *Service) begin(ctx context.Context, parent string, start *deliveryv1.DeliveryStart) (*deliveryv1.Delivery, *lease.Lease, error) {
	id := newID(time.Now())
	name := parent + "/" + deliveries + "/" + id
	output := start.GetOutputName()
	if output == "" {
		output = id
	}
	d := &deliveryv1.Delivery{
		Name: name, Destination: start.GetDestination(), IdempotencyKey: start.GetIdempotencyKey(),
		OutputName: output, Labels: start.GetLabels(), State: deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING,
		Progress: &deliveryv1.DeliveryProgress{}, Workflow: name + workflowLeaf,
		StagedInput:     &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_DISABLED},
		ServiceInstance: s.cfg.Instance, CreateTime: timestamppb.Now(), TraceParent: traceParent(ctx),
	}
	work := deliveryWork(name, kindDelivery)
	work.Trace = d.TraceParent
	l := s.work.Take(work)
	d, err := s.store.Deliveries.Create(ctx, parent, d, s.store.Workflows.Creating(parent, newWorkflow(d)), l.Hold)
	return d, l, err
}

// replay answers the delivery that holds start's idempotency key, waiting
// for its end when it is still running.
func (s *Service) replay(ctx context.Context, parent string, start *deliveryv1.DeliveryStart) (*deliveryv1.Delivery, error) {
	wait := 50 * time.Millisecond
	for {
		d, err := s.byKey(ctx, parent, start)
		if err != nil {
			return nil, err
		}
		switch d.GetState() {
		case deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED:
			return d, nil
		case deliveryv1.DeliveryState_DELIVERY_STATE_FAILED:
			return nil, replayed(d)
		}
		if d.GetStagedInput().GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED {
			return nil, resumeAt(d.GetName(), d.GetStagedInput().GetBytes())
		}
		if since := time.Since(d.GetUpdateTime().AsTime()); since > stalledAfter {
			return nil, apierror.New(codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_DELIVERY_STALLED,
				fmt.Sprintf("the delivery holding this idempotency key has not made progress for %s; its server may have stopped", since.Round(time.Second))).
				With("delivery", d.GetName())
		}
		select {
		case <-ctx.Done():
			return nil, apierror.Wrap(ctx.Err(), codes.DeadlineExceeded, errorsv1.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED,
				"the delivery holding this idempotency key is still running; ask again, or GetDelivery").With("delivery", d.GetName())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// run delivers src to dest for the stored delivery d and stores how it
// ended.
func (s *Service) run(ctx context.Context, d *deliveryv1.Delivery, dest *destinationv1.Destination, src source, w staging.Writer) (_ *deliveryv1.Delivery, err error) {
	opts := []trace.SpanStartOption{trace.WithAttributes(attrDelivery.String(d.GetName()), attrDestination.String(d.GetDestination()),
		attribute.Bool("sluice.rerun", isRerun(src)))}
	if trace.SpanContextFromContext(ctx).TraceID().String() != traceIDOf(d.GetTraceParent()) {
		// Another trace than the delivery's first (a resolution, a
		// takeover): linked to it.
		opts = append(opts, linkTo(d.GetTraceParent())...)
	}
	ctx, span := tracer().Start(ctx, "delivery run", opts...)
	defer func() {
		if err != nil {
			span.SetStatus(otelcodes.Error, "the delivery failed")
			var e *apierror.Error
			if errors.As(err, &e) {
				span.SetAttributes(attribute.String("error.type", apierror.ReasonName(e.Reason)))
			}
		}
		span.End()
	}()
	ctx = logging.WithFields(ctx)
	logging.Add(ctx, slog.String("delivery", d.GetName()))
	log := logging.FromContext(ctx)
	s.running.Store(d.GetName(), true)
	defer s.running.Delete(d.GetName())
	prog := &progress{}
	src.count(prog)
	src.stage(w)
	if w != nil {
		prog.staged.Store(w.Staged())
	}
	stopTracking := s.track(ctx, d.GetName(), prog)
	format := outputspec.FormatName(dest)
	if format == "" {
		format = "unknown"
	}
	ended := s.metrics.began(ctx, format)
	f := s.flowOf(d.GetName())
	objects, bucket, complete, err := s.convert(ctx, d, dest, src, prog, f)
	defer f.endSpans("", nil) // those still open
	// A transient fault (S3 or a peer unavailable, throttled, timing out)
	// runs the delivery again over what was staged and the rest of the
	// stream, after a growing pause, before anyone is told.
	for attempt := 1; err != nil && attempt <= s.cfg.TransientRetries && transient(err) && ctx.Err() == nil && (w != nil || isRerun(src)); attempt++ {
		log.WarnContext(ctx, "transient fault: running the delivery again from staged input", slog.Int("attempt", attempt+1), slog.String("error", err.Error()))
		s.metrics.reruns.Add(ctx, 1)
		if !pause(ctx, attempt) {
			break
		}
		next, closer, rerr := s.restart(ctx, d, src, w)
		if rerr != nil {
			err = errors.Join(err, rerr)
			break
		}
		if terr := s.takeBackFor(ctx, d, dest); terr != nil {
			closer.Close()
			err = terr
			continue
		}
		prog.reset()
		src = next
		src.count(prog)
		objects, bucket, complete, err = s.convert(ctx, d, dest, src, prog, f)
		closer.Close()
	}
	// Stopped from outside: the service is stopping, or another replica
	// took the delivery over. What it wrote and recorded stays as it is,
	// for whoever runs it next to continue.
	if cause := context.Cause(ctx); err != nil && (errors.Is(cause, errStopping) || errors.Is(cause, lease.ErrLost)) {
		stopTracking()
		ended(prog, apierror.ReasonName(errorsv1.ErrorReason_ERROR_REASON_SERVICE_STOPPED))
		return nil, apierror.Wrap(err, codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_SERVICE_STOPPED,
			"the delivery service stopped running this delivery ("+cause.Error()+"); another replica continues it: GetDelivery shows how it ends").With("delivery", d.GetName())
	}
	// A failure that is not the data's (access, the bucket, S3 giving
	// up) keeps the whole input, so that a resolution can run it again
	// without the caller: the rest of the stream is read into staging.
	if err != nil && !complete && src.whole() {
		complete = true // an earlier attempt read it all
	}
	if err != nil && !complete && w != nil && !isRerun(src) && keepsInput(err) && ctx.Err() == nil {
		// Only the live stream: the staged prefix of a retried attempt is
		// kept already (and its reader closed).
		var live io.Reader = src
		if res, ok := src.(*resumed); ok {
			live = res.live
		}
		if _, derr := io.Copy(io.Discard, live); derr != nil {
			log.InfoContext(ctx, "the stream broke while its rest was kept after a failure", slog.String("error", derr.Error()))
		} else {
			complete = true
		}
	}
	stopTracking()
	// What landed is answered, or was taken back; a failure that could not
	// take back what it wrote keeps the records for the next takeover.
	if err == nil || s.takeBackFor(ctx, d, dest) == nil {
		if ferr := s.store.ForgetWrites(context.WithoutCancel(ctx), d.GetName()); ferr != nil {
			log.WarnContext(ctx, "forget the delivery's recorded writes", slog.String("error", ferr.Error()))
		}
	}

	end := timestamppb.Now()
	var input *deliveryv1.StagedInput
	if isRerun(src) {
		input = s.finishRerun(ctx, d, err == nil)
	} else {
		input = s.finishStaging(ctx, d, w, err == nil, complete)
	}
	var broke *streamBroke
	if err != nil && input.GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED {
		// Not the data's fault, and the stream did not reach its end: the
		// caller may resume it.
		if errors.As(err, &broke) || ctx.Err() != nil || keepsInput(err) {
			return nil, s.interrupted(ctx, d, prog, input, err)
		}
		// The data was at fault (running again would fail the same way), or
		// staging is full: nothing is kept.
		if derr := s.staging.Delete(context.WithoutCancel(ctx), deliveryID(d.GetName())); derr != nil {
			log.WarnContext(ctx, "delete staged input", slog.String("error", derr.Error()))
		}
		input.State, input.ExpireTime = deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED, nil
	}
	var fail *apierror.Error
	if err != nil {
		fail = failure(err, d.GetName(), bucket)
		ended(prog, apierror.ReasonName(fail.Reason))
	} else {
		ended(prog, "")
	}
	if err != nil {
		if fail.Code == codes.Internal {
			log.ErrorContext(ctx, "delivery failed", slog.String("error", err.Error()))
		} else {
			log.InfoContext(ctx, "delivery failed", slog.String("reason", apierror.ReasonName(fail.Reason)), slog.String("error", err.Error()))
		}
	}
	// Stored even when the caller has gone: the outcome must be kept.
	stored, serr := s.store.Deliveries.Update(context.WithoutCancel(ctx), d.GetName(), "", func(sd *deliveryv1.Delivery) error {
		sd.Progress, sd.Bucket, sd.EndTime, sd.StagedInput = prog.snapshot(), bucket, end, input
		if fail != nil {
			sd.State, sd.Error = deliveryv1.DeliveryState_DELIVERY_STATE_FAILED, recorded(fail)
			return nil
		}
		sd.State, sd.Objects = deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED, objects
		return nil
	})
	if serr != nil {
		log.ErrorContext(ctx, "store the delivery's outcome", slog.String("error", serr.Error()))
		if fail == nil {
			return nil, fmt.Errorf("store the outcome of %s: %w", d.GetName(), serr)
		}
	}
	if fail != nil {
		f.endSpans(stepOf(err), err)
		s.failWorkflow(ctx, d, stepOf(err), recorded(fail), fixContext{
			destination: dest.GetName(), credential: dest.GetCredential(), bucket: bucket, prefix: dest.GetPrefix(),
			kmsKey: dest.GetEncryption().GetKmsKeyId(), missingPermission: fail.Metadata["missing_permission"],
			rerunnable: input.GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD,
		})
		return nil, fail
	}
	f.succeeded(ctx)
	if _, err := s.peers.Destinations.RecordDelivery(ctx, &destinationv1.RecordDeliveryRequest{
		Name: dest.GetName(), Delivery: d.GetName(), DeliveryTime: end,
	}); err != nil {
		log.WarnContext(ctx, "record the successful delivery on its destination", slog.String("error", err.Error()))
	}
	log.InfoContext(ctx, "delivered", slog.Int64("rows", prog.rows.Load()), slog.Int64("bytes_out", prog.bytesOut.Load()), slog.Int("objects", len(objects)))
	return stored, nil
}

// convert runs one attempt of the delivery's steps: it mints access, reads
// the destination's settings, and runs the pipeline, answering the objects
// and the bucket written to, and whether the whole stream was read. Each
// step is recorded in the workflow as it starts and ends; an error says
// its step.
func (s *Service) convert(ctx context.Context, d *deliveryv1.Delivery, dest *destinationv1.Destination, src io.Reader, prog *progress, f *flow) (objects []*deliveryv1.DeliveredObject, bucket string, complete bool, err error) {
	bucket = dest.GetBucketOverride()
	f.start(ctx, stepGetAccess)
	access, err := s.mint(ctx, dest.GetCredential(), f)
	if status.Code(err) == codes.NotFound {
		err = apierror.Wrap(err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_CREDENTIAL_DELETED,
			fmt.Sprintf("the destination's credential %s no longer exists: create it again, or give the destination another credential", dest.GetCredential()))
	}
	if err != nil {
		return nil, bucket, false, inStep(stepGetAccess, err)
	}
	f.succeed(ctx, stepGetAccess)
	if bucket == "" {
		bucket = access.GetBucket()
	}
	f.start(ctx, stepCheckDestination)
	cfg, err := outputspec.Config(dest, filename.Values{Now: d.GetCreateTime().AsTime(), OutputName: d.GetOutputName()})
	if errors.Is(err, outputspec.ErrPGPKey) {
		return nil, bucket, false, inStep(stepCheckDestination, apierror.Wrap(err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_PGP_KEY_NOT_USABLE,
			fmt.Sprintf("the destination's %v: give it a public key with a valid encryption subkey", err)))
	}
	if err != nil {
		return nil, bucket, false, inStep(stepCheckDestination, fmt.Errorf("the destination's settings: %w", err))
	}
	cfg.Spool = s.spool
	if err := outputspec.CheckKeys(cfg, 1); err != nil {
		var v apierror.Violations
		v.Add("start.output_name", "%v", err)
		return nil, bucket, false, inStep(stepCheckDestination, v.Err())
	}
	f.succeed(ctx, stepCheckDestination)
	var retries atomic.Int32
	client := s.cfg.AWS.S3(s.cfg.AWS.Provided(&mintedCredentials{s: s, credential: dest.GetCredential(), first: access}), access.GetRegion(),
		s.retrying(func() { retries.Add(1) }))
	f.start(ctx, stepConvert, stepUpload)
	uploadStep := stepUpload
	countRetries := func() {
		if n := retries.Swap(0); n > 0 {
			s.metrics.partRetries.Add(ctx, int64(n))
			f.retried(ctx, uploadStep, n)
		}
	}
	out := &output{
		cfg: cfg, limits: ingestLimits(s.cfg.Ingest, src), prog: prog,
		sink:     s.sink(ctx, d, client, dest, bucket, prog, src),
		manifest: dest.GetManifest(), success: dest.GetSuccessFile(),
		delivery: d.GetName(), destination: dest.GetName(), outputName: d.GetOutputName(),
		received: func() {
			complete = true
			f.succeed(ctx, stepConvert)
			_, err := s.store.Deliveries.Update(context.WithoutCancel(ctx), d.GetName(), "", func(sd *deliveryv1.Delivery) error {
				sd.State = deliveryv1.DeliveryState_DELIVERY_STATE_UPLOADING
				return nil
			})
			if err != nil {
				logging.FromContext(ctx).WarnContext(ctx, "store delivery state", slog.String("delivery", d.GetName()), slog.String("error", err.Error()))
			}
		},
		uploaded: func() {
			countRetries()
			uploadStep = stepFinish
			f.succeed(ctx, stepUpload)
			f.start(ctx, stepFinish)
		},
	}
	objects, err = out.run(ctx, src)
	countRetries()
	return objects, bucket, complete, err
}

// mint asks the credential service for access, trying again after a
// transient failure (the service unavailable, STS throttling) the way S3
// requests are; each attempt after the first counts on get_access.
func (s *Service) mint(ctx context.Context, credential string, f *flow) (*credentialv1.TemporaryAccess, error) {
	for attempt := 1; ; attempt++ {
		access, err := s.peers.Access.MintAccess(ctx, &credentialv1.MintAccessRequest{Name: credential})
		if err == nil || attempt >= s.cfg.RequestAttempts || !transient(err) || !backoff(ctx, attempt, s.cfg.RequestMaxBackoff) {
			return access, err
		}
		f.retried(ctx, stepGetAccess, 1)
	}
}

// sink answers the S3 sink of a delivery, recording each object it writes
// before the first byte, so that a crash leaves nothing that cannot be
// found and taken back.
func (s *Service) sink(ctx context.Context, d *deliveryv1.Delivery, client *s3.Client, dest *destinationv1.Destination, bucket string, prog *progress, src io.Reader) *s3Sink {
	sk := newS3Sink(ctx, client, s.pool, s.cfg.PartConcurrency, dest, bucket, prog.part, s.cfg.AWS.ObjectChecksums())
	sk.record = func(w store.Write) error { return s.store.RecordWrite(context.WithoutCancel(ctx), d.GetName(), w) }
	if rn, err := resourcename.Parse(d.GetName(), "deliveries"); err == nil {
		sk.owner = rn.Tenant
	}
	if st, ok := src.(interface{ onStall(func(*streamBudget)) }); ok {
		// A caller that stalls gives its part buffers back; its stream's
		// budget holds the bytes meanwhile.
		st.onStall(func(b *streamBudget) { sk.park(b.TryAcquire, b.Release) })
	}
	if rerun, ok := src.(*stagedSource); ok {
		sk.resume, rerun.resume = rerun.resume, nil // only the first attempt resumes
	}
	return sk
}

// track stores the delivery's counters every ProgressInterval (and at
// least every heartbeat, which tells a waiting second caller it is alive)
// until stop is called.
func (s *Service) track(ctx context.Context, name string, prog *progress) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(s.cfg.ProgressInterval)
		defer tick.Stop()
		var last *deliveryv1.DeliveryProgress
		lastWrite := time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			now := prog.snapshot()
			if last != nil && now.GetBytesIn() == last.GetBytesIn() && now.GetParts() == last.GetParts() && time.Since(lastWrite) < heartbeat {
				continue
			}
			staged := prog.staged.Load()
			_, err := s.store.Deliveries.Update(context.WithoutCancel(ctx), name, "", func(d *deliveryv1.Delivery) error {
				d.Progress = now
				if in := d.GetStagedInput(); in.GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_RECEIVING {
					in.Bytes = staged
				}
				return nil
			})
			if err != nil {
				logging.FromContext(ctx).WarnContext(ctx, "store delivery progress", slog.String("delivery", name), slog.String("error", err.Error()))
			}
			last, lastWrite = now, time.Now()
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// ingestLimits answers the limits a source is read with: a caller's
// stream's Arrow bodies count against the receive budget.
func ingestLimits(base arrowingest.Limits, src io.Reader) arrowingest.Limits {
	if b, ok := src.(interface{ receiveBudget() arrowingest.Budget }); ok {
		if budget := b.receiveBudget(); budget != nil {
			base.Budget = budget
		}
	}
	return base
}
