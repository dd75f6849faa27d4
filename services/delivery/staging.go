package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/lease"
	"github.com/sluicehq/sluice/pkg/logging"
	"github.com/sluicehq/sluice/pkg/resourcename"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/staging"
	"github.com/sluicehq/sluice/services/delivery/store"
)

func deliveryID(name string) string {
	n, _ := resourcename.Parse(name, deliveries)
	return n.ID
}

// startStaging opens the staged copy of a new delivery's input; nil when
// staging is off. held is what the tenant's stopped deliveries hold, read
// as the delivery was created.
func (s *Service) startStaging(ctx context.Context, d *deliveryv1.Delivery, held int64) (staging.Writer, error) {
	if s.staging == nil {
		return nil, nil
	}
	tenant := tenantOfName(d.GetName())
	quota := s.cfg.tenantStaging()
	if quota > 0 {
		if running := s.stagingOf(tenant).Load(); held+running >= quota {
			return nil, failure(&tenantStagingFull{held: held, running: running, quota: quota}, d.GetName(), "")
		}
	}
	// Staged writes outlive the caller: what arrived is kept when it goes.
	w, err := s.staging.Create(context.WithoutCancel(ctx), deliveryID(d.GetName()))
	if errors.Is(err, staging.ErrFull) {
		return nil, apierror.Wrap(err, codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_STAGING_FULL,
			"Sluice's staging space is full: try again once running deliveries end").With("delivery", d.GetName()).With("scope", "service")
	}
	if err != nil {
		return nil, err
	}
	if quota > 0 {
		w = &tenantStaged{Writer: w, running: s.stagingOf(tenant), room: quota - held, quota: quota}
	}
	_, span := tracer().Start(ctx, "stage input", trace.WithAttributes(attrDelivery.String(d.GetName())))
	return &stagingSpan{Writer: w, span: span}, nil
}

// tenantStaged counts a running delivery's staged bytes against its
// tenant's share, refusing a write that would pass it.
type tenantStaged struct {
	staging.Writer
	running *atomic.Int64 // the tenant's running deliveries' staged bytes
	room    int64         // the share less what the tenant kept, at start
	quota   int64
	counted int64
	err     error
}

// tenantStagingFull is a tenant's share of staging spent: its kept and
// running input together reached it.
type tenantStagingFull struct{ held, running, quota int64 }

func (e *tenantStagingFull) Error() string {
	return fmt.Sprintf("your tenant's share of Sluice's staging space is full (%d bytes kept for stopped deliveries and %d staged by running ones, of %d): resolve its failed deliveries or let them expire, or try again once running ones end; nothing was kept", e.held, e.running, e.quota)
}

func (e *tenantStagingFull) Unwrap() error { return staging.ErrFull }

func (w *tenantStaged) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if running := w.running.Load(); running+int64(len(p)) > w.room {
		w.err = &tenantStagingFull{held: w.quota - w.room, running: running, quota: w.quota}
		return 0, w.err
	}
	n, err := w.Writer.Write(p)
	w.running.Add(int64(n))
	w.counted += int64(n)
	return n, err
}

// Close gives back what the delivery counted: once it stops, what it keeps
// is counted from the store (HeldStaging).
func (w *tenantStaged) Close() error {
	w.running.Add(-w.counted)
	w.counted = 0
	return w.Writer.Close()
}

// Discard gives back what the delivery counted, like Close.
func (w *tenantStaged) Discard() error {
	w.running.Add(-w.counted)
	w.counted = 0
	return w.Writer.Discard()
}

// stagingOf answers the counter of what a tenant's running deliveries in
// this process stage.
func (s *Service) stagingOf(tenant string) *atomic.Int64 {
	c, _ := s.stagedByTenant.LoadOrStore(tenant, new(atomic.Int64))
	return c.(*atomic.Int64)
}

func tenantOfName(name string) string {
	n, _ := resourcename.Parse(name, deliveries)
	return n.Tenant
}

// stagingSpan is a delivery's staged input as a span, from its first byte
// to the close that makes it durable, with what was flushed and closed.
type stagingSpan struct {
	staging.Writer
	span    trace.Span
	flushes int
}

func (w *stagingSpan) Flush() error {
	w.flushes++
	return w.Writer.Flush()
}

func (w *stagingSpan) Close() error {
	err := w.Writer.Close()
	w.span.SetAttributes(attribute.Int64("sluice.staged_bytes", w.Staged()), attribute.Int("sluice.flushes", w.flushes))
	if err != nil {
		w.span.SetStatus(otelcodes.Error, "the staged input was not made durable")
	}
	w.span.End()
	return err
}

func (w *stagingSpan) Discard() error {
	err := w.Writer.Discard()
	w.span.SetAttributes(attribute.Int64("sluice.staged_bytes", w.Staged()), attribute.Int("sluice.flushes", w.flushes), attribute.Bool("sluice.discarded", true))
	w.span.End()
	return err
}

// abandon removes a delivery that never started, so that its idempotency
// key stays free, and answers err.
func (s *Service) abandon(ctx context.Context, d *deliveryv1.Delivery, err error) error {
	if derr := s.store.Deliveries.Delete(context.WithoutCancel(ctx), d.GetName(), "", s.store.Workflows.Deleting(d.GetName()+workflowLeaf)); derr != nil {
		logging.FromContext(ctx).WarnContext(ctx, "remove a delivery that never started", slog.String("delivery", d.GetName()), slog.String("error", derr.Error()))
	}
	return err
}

// expire deletes the held input of a delivery whose resume window or
// retention period ended: an interrupted delivery fails with
// STREAM_ENDED_EARLY, a failed one says its data expired and loses its
// actions, a cancelled one is cancelled for good. What a failed run left
// in the bucket for retry-task goes with it.
func (s *Service) expire(ctx context.Context, name string) {
	d, err := s.store.Deliveries.Get(ctx, name)
	if err != nil {
		if !errors.Is(err, apierror.ErrNotFound) {
			logging.FromContext(ctx).WarnContext(ctx, "expire staged input", slog.String("delivery", name), slog.String("error", err.Error()))
		}
		return
	}
	in := d.GetStagedInput()
	if in.GetExpireTime() == nil || time.Now().Before(in.GetExpireTime().AsTime()) {
		return
	}
	at := phaseOf(d)
	if at != phaseInterrupted && at != phaseFailedKept && at != phaseCancelledKept {
		return
	}
	if writes, err := s.store.Writes(ctx, name); err != nil {
		logging.FromContext(ctx).WarnContext(ctx, "expire staged input", slog.String("delivery", name), slog.String("error", err.Error()))
		return
	} else if dest, derr := s.destinationOf(ctx, d.GetDestination()); len(writes) > 0 && derr == nil {
		if err := s.takeBackFor(ctx, d, dest); err != nil {
			// Its records stay, for the sweeper to abort what it can.
			logging.FromContext(ctx).WarnContext(ctx, "take back what an expiring delivery left", slog.String("delivery", name), slog.String("error", err.Error()))
		}
	}
	expired := &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_EXPIRED, Bytes: in.GetBytes()}
	switch at {
	case phaseInterrupted:
		cause := &deliveryv1.DeliveryError{Reason: apierror.ReasonName(errorsv1.ErrorReason_ERROR_REASON_STREAM_ENDED_EARLY), Code: int32(codes.FailedPrecondition),
			Message: fmt.Sprintf("the Arrow stream ended after %d bytes, before its end-of-stream marker, and was not resumed within %s: send the data again", in.GetBytes(), s.cfg.ResumeWindow)}
		_, err = s.fail(ctx, d, []phase{phaseInterrupted}, phaseFailed, change{input: expired}, stepConvert, cause, fixContext{})
	case phaseFailedKept:
		cause := d.GetError()
		if cause != nil {
			cause.Message += fmt.Sprintf(" (its data was kept for %s and has expired: send it again)", s.cfg.StagingRetention)
		}
		// Nothing is left to run again: the actions go, and the failure
		// says why.
		_, _, err = s.move(ctx, name, []phase{phaseFailedKept}, phaseFailed, change{input: expired, err: cause, workflow: expiredRun(cause)})
	case phaseCancelledKept:
		_, _, err = s.move(ctx, name, []phase{phaseCancelledKept}, phaseCancelled, change{input: expired, workflow: expiredRun(nil)})
	}
	if _, ok := isWrongPhase(err); ok {
		return // resumed, resolved or cancelled meanwhile
	}
	if err != nil {
		logging.FromContext(ctx).WarnContext(ctx, "expire staged input", slog.String("delivery", name), slog.String("error", err.Error()))
		return
	}
	if s.staging != nil {
		_ = s.staging.Delete(ctx, deliveryID(name))
	}
}

// expirePass expires every held input past its time: the timers of a
// process that stopped are gone, the records are not.
func (s *Service) expirePass(ctx context.Context) error {
	found, err := s.store.Expired(ctx, time.Now(), 100)
	for _, d := range found {
		s.expire(ctx, d.GetName())
	}
	return err
}

// rejoin answers a Deliver whose idempotency key is taken: it resumes the
// delivery when it was interrupted and the caller resumes it, and
// otherwise answers the first delivery's result.
func (s *Service) rejoin(ctx context.Context, parent string, start *deliveryv1.DeliveryStart, dest *destinationv1.Destination, src source) (*deliveryv1.Delivery, error) {
	found, err := s.byKey(ctx, parent, start)
	if err != nil {
		return nil, err
	}
	in := found.GetStagedInput()
	if found.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING || in.GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED {
		if start.GetResumeOffset() > 0 {
			return nil, apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_NOTHING_TO_RESUME,
				"the delivery holding this idempotency key is not interrupted: nothing to resume").With("delivery", found.GetName())
		}
		return s.replay(ctx, parent, start)
	}
	if start.GetResumeOffset() != in.GetBytes() {
		return nil, resumeAt(found.GetName(), in.GetBytes())
	}
	// Claim it: of two callers resuming at once, one wins, and the
	// delivery is this replica's work again.
	l := s.work.Take(deliveryWork(found.GetName(), kindDelivery))
	claimed, _, err := s.move(ctx, found.GetName(), []phase{phaseInterrupted}, phaseReceiving, change{
		input: &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_RECEIVING, Bytes: in.GetBytes()},
		claim: true, also: []resourcestore.Also{l.Hold},
	})
	if _, ok := isWrongPhase(err); ok {
		return nil, apierror.New(codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_NOTHING_TO_RESUME, "another caller resumed this delivery, or it ended").With("delivery", found.GetName())
	}
	if errors.Is(err, lease.ErrHeld) {
		return nil, apierror.Wrap(err, codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_NOTHING_TO_RESUME,
			"another replica is taking this delivery over: ask again in a moment").With("delivery", found.GetName())
	}
	if err != nil {
		return nil, err
	}
	ctx, h := s.holding(ctx, l)
	defer h.done()
	out, err := s.execute(ctx, &job{entry: entryResume, d: claimed, dest: dest, live: src, held: start.GetResumeOffset()})
	if errors.Is(err, errUnsettled) {
		h.again(s.cfg.RecoverInterval)
	}
	return out, err
}

func resumeAt(delivery string, offset int64) error {
	return apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_RESUME_OFFSET_MISMATCH,
		fmt.Sprintf("Sluice holds the first %d bytes of this delivery's Arrow stream: resume from offset %d", offset, offset)).
		With("delivery", delivery).With("resume_offset", strconv.FormatInt(offset, 10))
}

// byKey answers the delivery holding start's idempotency key.
func (s *Service) byKey(ctx context.Context, parent string, start *deliveryv1.DeliveryStart) (*deliveryv1.Delivery, error) {
	key := resourcestore.Where{Column: store.IdempotencyColumn, Value: store.IdempotencyKey(start.GetDestination(), start.GetIdempotencyKey())}
	found, _, err := s.store.Deliveries.List(ctx, parent, "", 1, key)
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, apierror.New(codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION, "the delivery holding this idempotency key went away; retry")
	}
	return found[0], nil
}

// resumed is an interrupted delivery's input: the bytes held, read back
// and verified, then the rest from the resumed stream.
type resumed struct {
	prefix io.Reader
	live   source
	done   bool
	prog   *progress
}

func (r *resumed) count(prog *progress) {
	r.prog = prog
	r.live.count(prog)
}

func (r *resumed) stage(w staging.Writer) { r.live.stage(w) }
func (r *resumed) drop()                  { r.live.drop() }
func (r *resumed) whole() bool            { return r.live.whole() }

// Slice implements arrowingest.Slicer once the held bytes are read.
func (r *resumed) Slice(n int) ([]byte, error) {
	if s, ok := r.live.(arrowingest.Slicer); ok && r.done {
		return s.Slice(n)
	}
	return nil, nil
}

func (r *resumed) Read(p []byte) (int, error) {
	if !r.done {
		n, err := r.prefix.Read(p)
		r.prog.bytesIn.Add(int64(n))
		if err == io.EOF {
			r.done = true
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
	return r.live.Read(p)
}
