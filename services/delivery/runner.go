package delivery

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/lease"
	"github.com/sluicehq/sluice/pkg/logging"
	"github.com/sluicehq/sluice/pkg/outputspec"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/staging"
)

// entry is how a run of a delivery began.
type entry int

const (
	// entryDeliver is a Deliver or DoPut: the caller's stream, staged as
	// it arrives.
	entryDeliver entry = iota + 1
	// entryResume is a Deliver resuming an interrupted stream: the held
	// bytes read back, then the caller's stream.
	entryResume
	// entryTakeover is a delivery whose holder stopped after its stream
	// arrived, claimed by this replica: its kept input, continuing the
	// uploads the holder recorded.
	entryTakeover
	// entryResolve is a workflow action: its kept input, continuing what
	// the failed run left (retry-task) or from scratch (restart-workflow).
	entryResolve
)

func (e entry) String() string {
	return map[entry]string{entryDeliver: "deliver", entryResume: "resume", entryTakeover: "takeover", entryResolve: "resolve"}[e]
}

// job is one run of a delivery, whichever way it began: every entry point
// builds one and hands it to execute.
type job struct {
	entry entry
	// d is the delivery as stored when the run began.
	d *deliveryv1.Delivery
	// dest is the destination as it is now; resolved by the run when nil.
	dest *destinationv1.Destination
	// live is the caller's stream (deliver, resume); nil when the input is
	// read from staging.
	live source
	// w stages live as it arrives; nil when staging is off.
	w staging.Writer
	// held is, for a resume, the bytes of input staging holds before live.
	held int64
	// restart takes back whatever earlier runs wrote before running
	// (restart-workflow); otherwise a run from kept input continues the
	// uploads they recorded.
	restart bool
	// minted is access minted beside storing a new delivery, for its
	// first attempt.
	minted *preminted
	// lease is the run's lease when the move that stores its success
	// may end it (a new delivery's); nil otherwise.
	lease *held
}

// staged reports whether the job reads its whole input from staging.
func (j *job) staged() bool { return j.live == nil }

// result is what a run's attempts came to.
type result struct {
	prog    *progress
	objects []*deliveryv1.DeliveredObject
	bucket  string
	// whole is the whole input staged: the stream reached its end.
	whole bool
	err   error
	flow  *flow
	ended func(*progress, string)
}

// inputUnreadable is a run whose kept input could not be opened.
type inputUnreadable struct{ err error }

func (e *inputUnreadable) Error() string { return "read the kept input back: " + e.err.Error() }
func (e *inputUnreadable) Unwrap() error { return e.err }

// reopenFailed is a resumed run whose held input could not be opened.
type reopenFailed struct{ err error }

func (e *reopenFailed) Error() string { return "reopen the held input: " + e.err.Error() }
func (e *reopenFailed) Unwrap() error { return e.err }

// errUnsettled marks a run whose outcome could not be stored: its lease
// must be freed for another claim (which settles it), not dropped.
var errUnsettled = errors.New("the delivery's outcome was not stored")

// execute runs a job: it opens the input, runs attempts under the retry
// policy, and settles the outcome. Every run of every delivery goes
// through here.
func (s *Service) execute(ctx context.Context, j *job) (_ *deliveryv1.Delivery, err error) {
	name := j.d.GetName()
	opts := []trace.SpanStartOption{trace.WithAttributes(attrDelivery.String(name), attrDestination.String(j.d.GetDestination()),
		attribute.Bool("sluice.rerun", j.staged()), attribute.String("sluice.entry", j.entry.String()))}
	if trace.SpanContextFromContext(ctx).TraceID().String() != traceIDOf(j.d.GetTraceParent()) {
		// Another trace than the delivery's first (a resolution, a
		// takeover): linked to it.
		opts = append(opts, linkTo(j.d.GetTraceParent())...)
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
	logging.Add(ctx, slog.String("delivery", name))
	// CancelDelivery stops the run through its context, asked here or
	// (through the store) on another replica.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.running.Store(name, &runHandle{cancel: cancel})
	defer s.running.Delete(name)
	if j.entry != entryDeliver {
		// A Deliver's delivery was made a moment ago: a cancel asked
		// since then is no different from one asked just after this
		// check, which the progress beats find. Any other run may have
		// been cancelled while it waited.
		s.cancelIfAsked(ctx, name, cancel)
	}

	r := &result{prog: &progress{}, flow: s.flowOf(name)}
	defer r.flow.endSpans("", nil) // those still open
	if j.dest == nil {
		if j.dest, r.err = s.destinationOf(ctx, j.d.GetDestination()); r.err != nil {
			r.err = inStep(stepCheckDestination, r.err)
		}
	}
	format := outputspec.FormatName(j.dest)
	if format == "" {
		format = "unknown"
	}
	r.ended = s.metrics.began(ctx, format)
	if r.err == nil {
		var src source
		var closeInput func()
		if src, closeInput, r.err = s.open(ctx, j); r.err == nil {
			s.attempts(ctx, j, src, r)
			closeInput()
		} else if j.entry == entryResume {
			r.err = &reopenFailed{r.err}
		}
	}
	return s.settle(ctx, j, r)
}

// open answers a job's input and what closes it.
func (s *Service) open(ctx context.Context, j *job) (source, func(), error) {
	id := deliveryID(j.d.GetName())
	switch {
	case j.entry == entryDeliver:
		return j.live, func() {}, nil
	case j.entry == entryResume:
		w, held, err := s.staging.Append(context.WithoutCancel(ctx), id)
		if err != nil {
			return nil, nil, err
		}
		if held != j.held {
			w.Close()
			return nil, nil, resumeAt(j.d.GetName(), held)
		}
		prefix, err := s.staging.Open(ctx, id)
		if err != nil {
			w.Close()
			return nil, nil, err
		}
		j.w = w
		logging.FromContext(ctx).InfoContext(ctx, "delivery resumed", slog.Int64("offset", held))
		return &resumed{prefix: io.LimitReader(prefix, held), live: j.live}, func() { prefix.Close() }, nil
	case s.staging == nil:
		return nil, nil, &inputUnreadable{errors.New("staging is off in this service")}
	}
	r, err := s.staging.Open(ctx, id)
	if err != nil {
		return nil, nil, &inputUnreadable{err}
	}
	return &stagedSource{r: r}, func() { r.Close() }, nil
}

// attempts runs the job's steps, and again from the staged input after a
// transient fault (S3 or a peer unavailable, throttled, timing out), as
// the run retry policy allows, before anyone is told.
func (s *Service) attempts(ctx context.Context, j *job, src source, r *result) {
	log := logging.FromContext(ctx)
	prog := r.prog
	src.count(prog)
	src.stage(j.w)
	if j.w != nil {
		prog.staged.Store(j.w.Staged())
	}
	stopTracking := s.track(ctx, j.d.GetName(), prog)
	defer stopTracking()
	closeLast := func() {}
	defer func() { closeLast() }()
	for attempt := 1; ; attempt++ {
		var complete bool
		r.objects, r.bucket, complete, r.err = s.convert(ctx, j, src, prog, r.flow, attempt == 1)
		r.whole = r.whole || complete || src.whole()
		canRerun := j.staged() || j.w != nil
		if r.err == nil || !canRerun || !s.runRetry.again(ctx, attempt, r.err) {
			return
		}
		log.WarnContext(ctx, "transient fault: running the delivery again from staged input", slog.Int("attempt", attempt+1), slog.String("error", r.err.Error()))
		s.metrics.reruns.Add(ctx, 1)
		next, closer, err := s.restart(ctx, j, src)
		if err != nil {
			r.err = errors.Join(r.err, err)
			return
		}
		// The rerun writes the same keys: it continues what this attempt
		// recorded (prepare), keeping what landed and the parts stored.
		closeLast()
		closeLast = func() { closer.Close() }
		prog.reset()
		src = next
		src.count(prog)
	}
}

// outcome is how a run ended.
type outcome int

const (
	// outcomeSucceeded: every object landed.
	outcomeSucceeded outcome = iota + 1
	// outcomeStopped: the service is stopping or another replica took
	// the delivery over; what it wrote and recorded stays for the next
	// holder.
	outcomeStopped
	// outcomeInterrupted: the caller's stream ended early, and the
	// delivery, having an idempotency key, waits to be resumed.
	outcomeInterrupted
	// outcomeFailedKept: a failure that is not the data's, the whole
	// input held for a resolution.
	outcomeFailedKept
	// outcomeFailed: a data fault, or nothing could be kept.
	outcomeFailed
	// outcomeCancelled: CancelDelivery stopped it.
	outcomeCancelled
)

// decide answers how a run ended: the one rule for what is kept.
func (s *Service) decide(ctx context.Context, j *job, r *result) outcome {
	err := r.err
	if err == nil {
		return outcomeSucceeded
	}
	if errors.As(context.Cause(ctx), new(*cancelledBy)) {
		return outcomeCancelled
	}
	if cause := context.Cause(ctx); errors.Is(cause, errStopping) || errors.Is(cause, lease.ErrLost) {
		return outcomeStopped
	}
	var unreadable *inputUnreadable
	if errors.As(err, &unreadable) {
		if s.staging == nil || errors.Is(err, staging.ErrNotFound) {
			return outcomeFailed // nothing is held to run again
		}
		return outcomeFailedKept // still held: resolve again once staging answers
	}
	if j.staged() {
		// The input was whole and is held whatever failed, except data
		// the format cannot carry, which fails the same way each time.
		if dataFault(err) {
			return outcomeFailed
		}
		return outcomeFailedKept
	}
	if errors.As(err, new(*reopenFailed)) {
		return outcomeInterrupted // as it was: the caller may resume again
	}
	if endedEarly(err) {
		// Ended cleanly without its end marker, or broke: alike (a
		// cancelling producer may half-close before it resets).
		if j.d.GetIdempotencyKey() != "" && j.w != nil {
			return outcomeInterrupted
		}
		return outcomeFailed
	}
	if dataFault(err) || errors.Is(err, staging.ErrFull) || j.w == nil {
		return outcomeFailed
	}
	// Not the data's fault: the rest of the stream is read into staging so
	// that a resolution can run it again without the caller.
	if !r.whole && ctx.Err() == nil {
		live := j.live
		if res, ok := live.(*resumed); ok {
			live = res.live
		}
		if _, derr := io.Copy(io.Discard, live); derr != nil {
			logging.FromContext(ctx).InfoContext(ctx, "the stream broke while its rest was kept after a failure", slog.String("error", derr.Error()))
		} else {
			r.whole = true
		}
	}
	if r.whole {
		return outcomeFailedKept
	}
	return outcomeFailed
}

// endedEarly reports whether a failure is the caller's stream stopping
// before its end: it broke, idled, was cancelled, or closed without
// Arrow's end-of-stream marker. What arrived may be sound; the rest may
// come on a resume.
func endedEarly(err error) bool {
	var (
		broke  *streamBroke
		ingest *arrowingest.Error
	)
	return errors.As(err, &broke) || (errors.As(err, &ingest) && ingest.EndedEarly) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// settle stores how a run ended, in one move: the delivery's phase, its
// input, its workflow and notification, then the metrics and the
// destination's record. It answers the caller's result.
func (s *Service) settle(ctx context.Context, j *job, r *result) (*deliveryv1.Delivery, error) {
	name := j.d.GetName()
	log := logging.FromContext(ctx)
	steps := r.flow.settle()
	out := s.decide(ctx, j, r)
	if out != outcomeSucceeded {
		// Stored before the outcome's move; a success's go with it.
		r.flow.store(ctx, "steps", steps)
		steps = nil
	}
	if out == outcomeStopped {
		if j.w != nil {
			_ = j.w.Close() // what arrived is durable for the next holder
		}
		cause := context.Cause(ctx)
		r.ended(r.prog, apierror.ReasonName(errorsv1.ErrorReason_ERROR_REASON_SERVICE_STOPPED))
		return nil, apierror.Wrap(r.err, codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_SERVICE_STOPPED,
			"the delivery service stopped running this delivery ("+cause.Error()+"); another replica continues it: GetDelivery shows how it ends").With("delivery", name)
	}
	// What landed is answered, or taken back; what cannot be taken back
	// stays recorded for the sweeper and the next takeover. A failed take
	// back never replaces the run's own error.
	if out == outcomeSucceeded {
		// Its records are forgotten in the move that stores the success.
	} else if out == outcomeFailedKept && j.dest != nil {
		// Kept for retry-task: the objects that landed and the parts
		// stored stay; an upload that stored nothing goes.
		if err := s.abortEmpty(ctx, j.d, j.dest); err != nil {
			log.WarnContext(ctx, "abort the uploads that stored nothing; their records stay", slog.String("error", err.Error()))
		}
	} else if j.dest != nil {
		if err := s.takeBackFor(ctx, j.d, j.dest); err != nil {
			log.WarnContext(ctx, "take back what the delivery wrote; its records stay for the sweeper", slog.String("error", err.Error()))
		}
	}
	input := s.keep(ctx, j, out)
	c := change{input: input, progress: r.prog.snapshot(), bucket: r.bucket}
	if out == outcomeSucceeded {
		c.also = append(c.also, s.store.ForgettingWrites(name))
		if j.lease != nil {
			// The work ends with the success, one transaction fewer.
			c.also = append(c.also, j.lease.l.Ending)
		}
		c.objects, c.workflow = r.objects, func(w *deliveryv1.Workflow) {
			if steps != nil {
				steps(w)
			}
			succeededRun(w)
		}
		d, _, err := s.move(ctx, name, running, phaseSucceeded, c)
		if err != nil {
			log.ErrorContext(ctx, "store the delivery's outcome", slog.String("error", err.Error()))
			return nil, fmt.Errorf("store the outcome of %s: %w: %w", name, errUnsettled, err)
		}
		if j.lease != nil {
			j.lease.gone.Store(true)
		}
		r.ended(r.prog, "")
		s.successes.add(ctx, j.dest, &destinationv1.RecordDeliveryRequest{Name: j.dest.GetName(), Delivery: name, DeliveryTime: d.GetEndTime()})
		log.InfoContext(ctx, "delivered", slog.Int64("rows", r.prog.rows.Load()), slog.Int64("bytes_out", r.prog.bytesOut.Load()), slog.Int("objects", len(r.objects)))
		return d, nil
	}
	fail := failure(r.err, name, r.bucket)
	var by *cancelledBy
	if out == outcomeCancelled && errors.As(context.Cause(ctx), &by) {
		fail = by.error(name)
	}
	r.ended(r.prog, apierror.ReasonName(fail.Reason))
	if out == outcomeCancelled {
		to := phaseCancelled
		var actions []*deliveryv1.WorkflowAction
		if input.GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD {
			to, actions = phaseCancelledKept, restartOnly()
			s.expireAfter(name, s.cfg.StagingRetention)
		}
		r.flow.endSpans("", nil)
		c.err, c.workflow = recorded(fail), cancelledRun(actions)
		c.also = append(c.also, s.store.ForgettingCancel(name))
		if _, _, err := s.move(ctx, name, running, to, c); err != nil {
			log.ErrorContext(ctx, "store a cancelled delivery", slog.String("error", err.Error()))
			return nil, errors.Join(fail, errUnsettled)
		}
		log.InfoContext(ctx, "delivery cancelled", slog.String("by", by.subject))
		return nil, fail
	}
	if out == outcomeInterrupted {
		c.progress.Rows, c.progress.BytesOut, c.progress.Parts = 0, 0, 0
		if _, _, err := s.move(ctx, name, running, phaseInterrupted, c); err != nil {
			log.ErrorContext(ctx, "store an interrupted delivery", slog.String("error", err.Error()))
			return nil, errors.Join(fail, errUnsettled)
		}
		log.InfoContext(ctx, "delivery interrupted: resumable", slog.Int64("staged_bytes", input.GetBytes()), slog.String("cause", r.err.Error()))
		s.expireAfter(name, s.cfg.ResumeWindow)
		return nil, fail.With("resume_offset", strconv.FormatInt(input.GetBytes(), 10))
	}
	if fail.Code == codes.Internal {
		log.ErrorContext(ctx, "delivery failed", slog.String("error", r.err.Error()))
	} else {
		log.InfoContext(ctx, "delivery failed", slog.String("reason", apierror.ReasonName(fail.Reason)), slog.String("error", r.err.Error()))
	}
	to := phaseFailed
	if out == outcomeFailedKept {
		to = phaseFailedKept
		s.expireAfter(name, s.cfg.StagingRetention)
	}
	step := stepOf(r.err)
	r.flow.endSpans(step, r.err)
	cause := recorded(fail)
	fix := fixContext{destination: j.dest.GetName(), credential: j.dest.GetCredential(), bucket: r.bucket, prefix: j.dest.GetPrefix(),
		kmsKey: j.dest.GetEncryption().GetKmsKeyId(), missingPermission: fail.Metadata["missing_permission"], rerunnable: to == phaseFailedKept}
	if _, err := s.fail(ctx, j.d, running, to, c, step, cause, fix); err != nil {
		log.ErrorContext(ctx, "store the delivery's failure", slog.String("error", err.Error()))
		return nil, errors.Join(fail, errUnsettled)
	}
	return nil, fail
}

// fail moves a delivery from one of from to a failed phase to, with its
// workflow failed at step with the actions that resolve cause, and a
// notification raised, all in one transaction.
func (s *Service) fail(ctx context.Context, d *deliveryv1.Delivery, from []phase, to phase, c change, step string, cause *deliveryv1.DeliveryError, fix fixContext) (*deliveryv1.Delivery, error) {
	ctx = context.WithoutCancel(ctx)
	actions := s.actionsFor(ctx, d, apierror.ParseReason(cause.GetReason()), cause, fix)
	c.err, c.workflow = cause, failedRun(step, cause, actions)
	c.also = append(c.also, s.notification(d, cause, len(actions) > 0))
	stored, _, err := s.move(ctx, d.GetName(), from, to, c)
	return stored, err
}

// keep closes the job's staged copy and decides what of its input stays:
// nothing after a success or a data fault, the whole of it for a
// resolution, what arrived for a resume. It answers the input's record.
func (s *Service) keep(ctx context.Context, j *job, out outcome) *deliveryv1.StagedInput {
	ctx = context.WithoutCancel(ctx)
	if s.staging == nil {
		return &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_DISABLED}
	}
	id := deliveryID(j.d.GetName())
	in := &deliveryv1.StagedInput{}
	var by *cancelledBy
	if out == outcomeCancelled && errors.As(context.Cause(ctx), &by) && by.keep && (j.staged() || (j.w != nil && j.live.whole())) {
		out = outcomeFailedKept // kept alike
	}
	kept := out == outcomeInterrupted || out == outcomeFailedKept
	if j.w != nil && !kept {
		// Deleted below: not made durable first.
		if err := j.w.Discard(); err != nil {
			logging.FromContext(ctx).WarnContext(ctx, "discard staged input", slog.String("error", err.Error()))
		}
		in.Bytes = j.w.Staged()
	} else if j.w != nil {
		// Closed first: a store may hold back the last bytes until then.
		if err := j.w.Close(); err != nil {
			logging.FromContext(ctx).WarnContext(ctx, "close staged input", slog.String("error", err.Error()))
		}
		in.Bytes = j.w.Staged()
	} else if j.entry == entryResume {
		in.Bytes = j.held // its held input was not reopened
	} else if !j.staged() {
		return &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_DISABLED}
	} else {
		in.Bytes, _ = s.staging.Size(ctx, id)
	}
	switch out {
	case outcomeInterrupted:
		return &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED, Bytes: in.GetBytes(),
			ExpireTime: timestamppb.New(time.Now().Add(s.cfg.ResumeWindow))}
	case outcomeFailedKept:
		return &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD, Bytes: in.GetBytes(),
			ExpireTime: timestamppb.New(time.Now().Add(s.cfg.StagingRetention))}
	}
	if err := s.staging.Delete(ctx, id); err != nil && !errors.Is(err, staging.ErrNotFound) {
		logging.FromContext(ctx).WarnContext(ctx, "delete staged input", slog.String("error", err.Error()))
	}
	return &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED, Bytes: in.GetBytes()}
}

// notification answers the raising of a notification for a failed
// delivery, as work for the move that fails it.
func (s *Service) notification(d *deliveryv1.Delivery, cause *deliveryv1.DeliveryError, actions bool) resourcestore.Also {
	n := s.notificationOf(d, cause, actions)
	if n == nil {
		return func(context.Context, *sql.Tx) error { return nil }
	}
	return s.store.Notifications.Creating(parentOf(n.GetName()), n)
}

// expireAfter expires a delivery's held input once d has passed, if it is
// still held then; the expiry pass does it for a process that stopped.
func (s *Service) expireAfter(name string, d time.Duration) {
	time.AfterFunc(d, func() { s.expire(context.Background(), name) })
}

// destinationOf resolves a destination as the service itself, for a run no
// caller started: a deleted one says so.
func (s *Service) destinationOf(ctx context.Context, name string) (*destinationv1.Destination, error) {
	dest, err := s.peers.Destinations.ResolveDestination(ctx, &destinationv1.ResolveDestinationRequest{Name: name})
	if status.Code(err) == codes.NotFound {
		return nil, apierror.Wrap(err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_DESTINATION_DELETED,
			"the delivery's destination was deleted: nothing can be delivered").With("destination", name)
	}
	return dest, err
}
