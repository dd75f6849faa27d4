package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/awserror"
	"github.com/sluicehq/sluice/pkg/lease"
	"github.com/sluicehq/sluice/pkg/logging"
	"github.com/sluicehq/sluice/pkg/staging"
)

// takeOver runs a delivery whose holder stopped (its lease l ran out, or
// this instance held it when it stopped): it takes back what had been
// written (aborting multipart uploads, deleting objects), and then reruns
// it from staged input when its whole stream was received (continuing
// the interrupted uploads), leaves it for its caller to resume when it was
// still receiving, or fails it when nothing was staged. A failure to take
// it over frees the work for another try after a pause, by any replica.
func (s *Service) takeOver(ctx context.Context, l *lease.Lease, log *slog.Logger) {
	// The story goes on in the trace of the request that started the work.
	ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": l.Trace})
	ctx, span := tracer().Start(ctx, "take over", trace.WithAttributes(attrDelivery.String(l.Subject),
		attribute.String("sluice.work", l.Kind), attribute.Int("sluice.claim", l.Attempt)))
	defer span.End()
	ctx, h := s.holding(ctx, l)
	err := s.takeOverHeld(ctx, l, log)
	switch {
	case errors.Is(context.Cause(ctx), errStopping):
		h.again(0) // for whichever replica comes first, this one restarted included
	case err != nil && ctx.Err() == nil:
		log.WarnContext(ctx, "take over a stopped delivery", slog.String("error", err.Error()))
		h.again(s.cfg.RecoverInterval)
	default:
		h.done()
	}
}

func (s *Service) takeOverHeld(ctx context.Context, l *lease.Lease, log *slog.Logger) error {
	if s.live(l.Subject) {
		return nil // this process runs it (a holder's second claim): nothing to take over
	}
	claimed, err := s.store.Deliveries.Update(ctx, l.Subject, "", func(sd *deliveryv1.Delivery) error {
		running := sd.GetState() == deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING || sd.GetState() == deliveryv1.DeliveryState_DELIVERY_STATE_UPLOADING ||
			sd.GetState() == deliveryv1.DeliveryState_DELIVERY_STATE_RESOLVING
		// A resolution whose holder stopped before the delivery said so.
		startedResolving := l.Kind == kindResolve && sd.GetState() == deliveryv1.DeliveryState_DELIVERY_STATE_FAILED &&
			sd.GetStagedInput().GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD
		if (!running && !startedResolving) || sd.GetStagedInput().GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED {
			return errNotOrphan
		}
		if startedResolving {
			sd.State, sd.Error, sd.EndTime, sd.Objects = deliveryv1.DeliveryState_DELIVERY_STATE_RESOLVING, nil, nil, nil
			sd.Progress = &deliveryv1.DeliveryProgress{}
		}
		sd.ServiceInstance = s.cfg.Instance
		return nil
	})
	if errors.Is(err, errNotOrphan) || errors.Is(err, apierror.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	log = log.With(slog.String("delivery", claimed.GetName()))
	dest, client, err := s.accessFor(ctx, claimed.GetDestination())
	if err != nil {
		return fmt.Errorf("access to take back its writes: %w", err)
	}
	id := deliveryID(claimed.GetName())
	// A delivery whose stream had arrived runs again from staging and
	// continues its interrupted uploads; any other takes back its writes.
	if err := s.abortUnrecorded(ctx, claimed.GetName(), client, dest); err != nil {
		return err
	}
	var resume map[string]resumable
	rerun := claimed.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING && s.staging != nil
	if rerun {
		if resume, err = s.interruptedUploads(ctx, claimed.GetName(), client); err != nil {
			return err
		}
	} else if err := s.takeBack(ctx, claimed.GetName(), dest, client); err != nil {
		return err
	}
	if s.staging == nil {
		return s.endStopped(ctx, claimed, "the delivery service stopped while the delivery ran, and staging is off: send the data again")
	}
	held, err := s.staging.Size(ctx, id)
	receiving := claimed.GetState() == deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING
	if errors.Is(err, staging.ErrNotFound) && receiving {
		// Nothing reached the store yet (S3 staging stores whole
		// segments): the caller resumes from the first byte.
		var w staging.Writer
		if w, err = s.staging.Create(ctx, id); err == nil {
			err = w.Close()
		}
		held = 0
	}
	if errors.Is(err, staging.ErrNotFound) {
		return s.endStopped(ctx, claimed, "the delivery service stopped while the delivery ran and its input was not kept: send the data again")
	}
	if err != nil {
		return err
	}
	if receiving {
		// The caller's stream died with the process: they may resume it.
		in := &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED, Bytes: held,
			ExpireTime: timestamppb.New(time.Now().Add(s.cfg.ResumeWindow))}
		log.InfoContext(ctx, "took over an interrupted delivery: resumable", slog.Int64("staged_bytes", held))
		_ = s.interrupted(ctx, claimed, &progress{}, in, errors.New("the delivery service stopped while receiving"))
		return nil
	}
	// The whole stream was received: run it again from the staged copy.
	// Stopped with the service, a rerun cut short is taken over again.
	log.InfoContext(ctx, "took over a stopped delivery: running it again from staged input", slog.Int64("staged_bytes", held), slog.Int("claim", l.Attempt))
	s.running.Store(claimed.GetName(), true)
	if _, err := s.rerun(ctx, claimed, dest, resume); err != nil {
		log.WarnContext(ctx, "rerun from staged input failed", slog.String("error", err.Error()))
	}
	return nil
}

var errNotOrphan = errors.New("not an orphan")

// rerun runs a delivery again from its staged input, with the destination
// and credential as they are now, writing the same keys.
func (s *Service) rerun(ctx context.Context, d *deliveryv1.Delivery, dest *destinationv1.Destination, resume map[string]resumable) (*deliveryv1.Delivery, error) {
	if s.staging == nil {
		s.running.Delete(d.GetName())
		return nil, apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_SERVICE_STOPPED, "staging is off: the delivery's input was not kept")
	}
	r, err := s.staging.Open(ctx, deliveryID(d.GetName()))
	if err != nil {
		// An outcome like any other (#23): the delivery must not stay
		// RESOLVING with nobody running it.
		return nil, s.unreadable(ctx, d, err)
	}
	defer r.Close()
	return s.run(ctx, d, dest, &stagedSource{r: r, resume: resume}, nil)
}

// unreadable ends a rerun whose kept input could not be opened: FAILED,
// the input still held for another resolution, the workflow failed with
// its actions and a notification raised, nothing left running.
func (s *Service) unreadable(ctx context.Context, d *deliveryv1.Delivery, cause error) error {
	defer s.running.Delete(d.GetName())
	ctx = context.WithoutCancel(ctx)
	e := apierror.Wrap(cause, codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_STAGED_INPUT_UNREADABLE,
		"the delivery's kept input could not be read back to run it again; it is still kept: resolve again once staging answers").With("delivery", d.GetName())
	logging.FromContext(ctx).WarnContext(ctx, "open the kept input of a rerun", slog.String("delivery", d.GetName()), slog.String("error", cause.Error()))
	stored, err := s.store.Deliveries.Update(ctx, d.GetName(), "", func(sd *deliveryv1.Delivery) error {
		sd.State, sd.EndTime, sd.Error = deliveryv1.DeliveryState_DELIVERY_STATE_FAILED, timestamppb.Now(), recorded(e)
		if in := sd.GetStagedInput(); in != nil && in.GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD {
			in.State = deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD
		}
		return nil
	})
	if err != nil {
		return errors.Join(e, fmt.Errorf("store the outcome: %w", err))
	}
	s.failWorkflow(ctx, stored, stepConvert, stored.GetError(), fixContext{destination: stored.GetDestination(), rerunnable: true})
	return e
}

// stagedSource reads a delivery's whole input back from staging.
type stagedSource struct {
	r    io.Reader
	prog *progress
	// resume holds the uploads the run continues, by key.
	resume map[string]resumable
}

func (r *stagedSource) count(prog *progress) { r.prog = prog }
func (r *stagedSource) stage(staging.Writer) {}
func (r *stagedSource) drop()                {}
func (r *stagedSource) whole() bool          { return true }
func (r *stagedSource) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.prog.bytesIn.Add(int64(n))
	return n, err
}

// endStopped fails a delivery that cannot run again.
func (s *Service) endStopped(ctx context.Context, d *deliveryv1.Delivery, msg string) error {
	stored, err := s.store.Deliveries.Update(ctx, d.GetName(), "", func(sd *deliveryv1.Delivery) error {
		sd.State, sd.EndTime = deliveryv1.DeliveryState_DELIVERY_STATE_FAILED, timestamppb.Now()
		sd.Error = &deliveryv1.DeliveryError{Reason: apierror.ReasonName(errorsv1.ErrorReason_ERROR_REASON_SERVICE_STOPPED), Message: msg, Code: int32(codes.Unavailable)}
		return nil
	})
	if err == nil {
		step := stepConvert
		if d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING {
			step = stepUpload
		}
		s.failWorkflow(ctx, stored, step, stored.GetError(), fixContext{})
	}
	return err
}

// accessFor resolves a destination and mints access to its bucket, as the
// service itself: no caller is waiting.
func (s *Service) accessFor(ctx context.Context, destination string) (*destinationv1.Destination, *s3.Client, error) {
	dest, client, _, err := s.bucketAccess(ctx, destination)
	return dest, client, err
}

// bucketAccess is accessFor with the bucket the destination writes to.
func (s *Service) bucketAccess(ctx context.Context, destination string) (*destinationv1.Destination, *s3.Client, string, error) {
	dest, err := s.peers.Destinations.ResolveDestination(ctx, &destinationv1.ResolveDestinationRequest{Name: destination})
	if err != nil {
		return nil, nil, "", err
	}
	access, err := s.peers.Access.MintAccess(ctx, &credentialv1.MintAccessRequest{Name: dest.GetCredential()})
	if err != nil {
		return dest, nil, "", err
	}
	client := s.cfg.AWS.S3(s.cfg.AWS.Static(aws.Credentials{
		AccessKeyID: access.GetAccessKeyId(), SecretAccessKey: access.GetSecretAccessKey(), SessionToken: access.GetSessionToken(),
	}), access.GetRegion(), s.retrying(func() {}))
	bucket := dest.GetBucketOverride()
	if bucket == "" {
		bucket = access.GetBucket()
	}
	return dest, client, bucket, nil
}

// interruptedUploads answers the recorded uploads of a delivery that S3
// still holds, with their parts, by key; an upload S3 no longer has (it
// completed, or was aborted) is rewritten from scratch.
func (s *Service) interruptedUploads(ctx context.Context, delivery string, client *s3.Client) (map[string]resumable, error) {
	writes, err := s.store.Writes(ctx, delivery)
	if err != nil {
		return nil, err
	}
	out := map[string]resumable{}
	for _, w := range writes {
		if w.UploadID == "" {
			continue
		}
		r := resumable{uploadID: w.UploadID}
		in := &s3.ListPartsInput{Bucket: aws.String(w.Bucket), Key: aws.String(w.Key), UploadId: aws.String(w.UploadID)}
		for {
			page, err := client.ListParts(ctx, in)
			if awserror.NoSuchUpload(err) {
				r.uploadID = ""
				break
			}
			if err != nil {
				return nil, fmt.Errorf("list the parts of %s: %w", w.Key, err)
			}
			r.parts = append(r.parts, page.Parts...)
			if !aws.ToBool(page.IsTruncated) {
				break
			}
			in.PartNumberMarker = page.NextPartNumberMarker
		}
		if r.uploadID != "" {
			out[w.Key] = r
		}
	}
	return out, nil
}

// abortUnrecorded aborts the uploads a delivery created but died before
// recording: uploads of its recorded keys whose ids no record holds, begun
// after the key was recorded and at least a lease's length ago (a live
// delivery writing the same key records its upload's id at once). Its
// takeover starts those keys afresh and then forgets them, so nothing else
// would ever find these uploads.
func (s *Service) abortUnrecorded(ctx context.Context, delivery string, client *s3.Client, dest *destinationv1.Destination) error {
	all, err := s.store.RecordedWrites(ctx)
	if err != nil {
		return err
	}
	recorded := map[string]bool{}
	for _, w := range all {
		if w.UploadID != "" {
			recorded[w.UploadID] = true
		}
	}
	owner := optional(dest.GetExpectedBucketOwner())
	var errs []error
	for _, w := range all {
		if w.Delivery != delivery || w.UploadID != "" {
			continue
		}
		stray, err := s.unrecordedUploads(ctx, client, owner, w.Write, w.Recorded, recorded)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, u := range stray {
			if time.Since(aws.ToTime(u.Initiated)) < s.cfg.LeaseTTL {
				continue
			}
			_, err := client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(w.Bucket), Key: aws.String(w.Key), UploadId: u.UploadId, ExpectedBucketOwner: owner})
			if err != nil && !awserror.NoSuchUpload(err) {
				errs = append(errs, fmt.Errorf("abort the unrecorded upload of %s: %w", w.Key, err))
			}
		}
	}
	return errors.Join(errs...)
}

// takeBack aborts the recorded multipart uploads of a delivery and deletes
// the objects it wrote, then forgets them.
func (s *Service) takeBack(ctx context.Context, delivery string, dest *destinationv1.Destination, client *s3.Client) error {
	writes, err := s.store.Writes(ctx, delivery)
	if err != nil {
		return err
	}
	owner := optional(dest.GetExpectedBucketOwner())
	var errs []error
	for _, w := range writes {
		if w.UploadID != "" {
			_, err := client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(w.Bucket), Key: aws.String(w.Key), UploadId: aws.String(w.UploadID), ExpectedBucketOwner: owner})
			if err != nil && !awserror.NoSuchUpload(err) {
				errs = append(errs, fmt.Errorf("abort the upload of %s: %w", w.Key, err))
			}
		}
		if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(w.Bucket), Key: aws.String(w.Key), ExpectedBucketOwner: owner}); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", w.Key, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return s.store.ForgetWrites(ctx, delivery)
}

// finishRerun answers what is held after a rerun from staged input: the
// copy goes once the delivery succeeds, and is kept for the retention
// period after another failure.
func (s *Service) finishRerun(ctx context.Context, d *deliveryv1.Delivery, ok bool) *deliveryv1.StagedInput {
	ctx = context.WithoutCancel(ctx)
	id := deliveryID(d.GetName())
	held, _ := s.staging.Size(ctx, id)
	if ok {
		_ = s.staging.Delete(ctx, id)
		return &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED, Bytes: held}
	}
	return &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD, Bytes: held,
		ExpireTime: timestamppb.New(time.Now().Add(s.cfg.StagingRetention))}
}

// live reports whether this process runs the delivery now.
func (s *Service) live(name string) bool {
	_, ok := s.running.Load(name)
	return ok
}

func isRerun(src source) bool {
	_, ok := src.(*stagedSource)
	return ok
}

// transient reports whether a failure may go away by itself: S3 or a peer
// unavailable, throttling, a timeout, a dropped connection. The caller's
// own stream breaking, bad data and a full staging store are not.
func transient(err error) bool {
	var (
		broke  *streamBroke
		ingest *arrowingest.Error
		schema *schemaError
		hung   *hungEndpoint
	)
	if errors.As(err, &broke) || errors.As(err, &ingest) || errors.As(err, &schema) || errors.Is(err, staging.ErrFull) || errors.Is(err, context.Canceled) ||
		errors.As(err, &hung) { // running again would wait as long again
		return false
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded || st.Code() == codes.ResourceExhausted
	}
	return awserror.Classify(err, "").Retryable
}

// dataFault reports whether a failure lies in the data the caller sent (an
// invalid stream, a schema the format cannot carry, an invalid request):
// running it again would fail the same way.
func dataFault(err error) bool {
	var (
		ingest *arrowingest.Error
		schema *schemaError
		value  *arrowfmt.ValueError
		e      *apierror.Error
	)
	return errors.As(err, &ingest) || errors.As(err, &schema) || errors.As(err, &value) || (errors.As(err, &e) && e.Code == codes.InvalidArgument)
}

// keepsInput reports whether a failed delivery's input is worth keeping for
// a rerun: not when the data is at fault, nor when staging is full.
func keepsInput(err error) bool { return !dataFault(err) && !errors.Is(err, staging.ErrFull) }

// pause waits before running a delivery again for the attempt+1st time.
func pause(ctx context.Context, attempt int) bool { return backoff(ctx, attempt, 30*time.Second) }

// backoff waits before attempt+1: exponential from one second, at most
// limit, with full jitter (a uniform draw below the exponential bound), so
// that many deliveries failing together do not come back together.
func backoff(ctx context.Context, attempt int, limit time.Duration) bool {
	d := min(limit, time.Second<<min(attempt-1, 30))
	d = time.Duration(rand.Int64N(int64(d) + 1))
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// restart answers the source of another attempt: every byte staged so
// far, read back and verified, then the rest of the live stream (whose
// buffered bytes are already among the staged ones).
func (s *Service) restart(ctx context.Context, d *deliveryv1.Delivery, src source, w staging.Writer) (source, io.Closer, error) {
	if w != nil {
		if err := w.Flush(); err != nil { // all received is readable
			return nil, nil, err
		}
	}
	r, err := s.staging.Open(ctx, deliveryID(d.GetName()))
	if err != nil {
		return nil, nil, err
	}
	if isRerun(src) {
		return &stagedSource{r: r}, r, nil
	}
	live := src
	if res, ok := src.(*resumed); ok {
		live = res.live
	}
	live.drop()
	return &resumed{prefix: io.LimitReader(r, w.Staged()), live: live}, r, nil
}

// takeBackFor takes back what a delivery wrote, with fresh access.
func (s *Service) takeBackFor(ctx context.Context, d *deliveryv1.Delivery, dest *destinationv1.Destination) error {
	ctx = context.WithoutCancel(ctx)
	_, client, err := s.accessFor(ctx, dest.GetName())
	if err != nil {
		return err
	}
	return s.takeBack(ctx, d.GetName(), dest, client)
}
