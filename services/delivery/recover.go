package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/awserror"
	"github.com/sluicehq/sluice/pkg/lease"
	"github.com/sluicehq/sluice/pkg/staging"
	"github.com/sluicehq/sluice/services/delivery/store"
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
	d, err := s.store.Deliveries.Get(ctx, l.Subject)
	if errors.Is(err, apierror.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	log = log.With(slog.String("delivery", d.GetName()))
	switch phaseOf(d) {
	case phaseReceiving:
		return s.takeOverReceiving(ctx, d, log)
	case phaseUploading, phaseResolving:
	default:
		return nil // it ended, or waits for its caller: nothing to take over
	}
	// The whole stream had arrived: claimed, it runs again from its kept
	// input, continuing the uploads its holder recorded.
	claimed, _, err := s.move(ctx, d.GetName(), []phase{phaseUploading, phaseResolving}, phaseSame, change{claim: true})
	if _, ok := isWrongPhase(err); ok {
		return nil
	}
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "took over a stopped delivery: running it again from its kept input", slog.Int("claim", l.Attempt))
	if _, err := s.execute(ctx, &job{entry: entryTakeover, d: claimed}); errors.Is(err, errUnsettled) {
		return err
	}
	return nil
}

// takeOverReceiving claims a delivery whose holder stopped while its
// stream arrived: the caller's stream died with it. What it wrote is
// taken back; with an idempotency key and its input kept, the caller may
// resume it; otherwise nobody can, and it fails.
func (s *Service) takeOverReceiving(ctx context.Context, d *deliveryv1.Delivery, log *slog.Logger) error {
	// What it wrote is taken back; what cannot be stays recorded, for
	// the sweeper.
	if writes, err := s.store.Writes(ctx, d.GetName()); err != nil {
		return err
	} else if len(writes) > 0 {
		a, err := s.accessTo(ctx, d.GetDestination())
		if err == nil {
			client := a.client(func() {})
			if err = s.abortUnrecorded(ctx, d.GetName(), client, a.dest); err == nil {
				err = s.takeBack(ctx, d.GetName(), a.dest, client)
			}
		}
		if err != nil {
			log.WarnContext(ctx, "take back what a stopped delivery wrote; its records stay for the sweeper", slog.String("error", err.Error()))
		}
	}
	held, serr := int64(0), error(staging.ErrNotFound)
	if s.staging != nil {
		id := deliveryID(d.GetName())
		held, serr = s.staging.Size(ctx, id)
		if errors.Is(serr, staging.ErrNotFound) {
			// Nothing reached the store yet (S3 staging stores whole
			// segments): the caller resumes from the first byte.
			var w staging.Writer
			if w, serr = s.staging.Create(ctx, id); serr == nil {
				serr = w.Close()
			}
			held = 0
		}
	}
	if d.GetIdempotencyKey() == "" || serr != nil {
		msg := "the delivery service stopped while the delivery's stream arrived, and it had no idempotency key to resume it with: send the data again"
		if serr != nil {
			msg = "the delivery service stopped while the delivery's stream arrived, and its input was not kept: send the data again"
		}
		if s.staging != nil {
			_ = s.staging.Delete(ctx, deliveryID(d.GetName()))
		}
		gone := deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED
		if s.staging == nil {
			gone = deliveryv1.StagedInputState_STAGED_INPUT_STATE_DISABLED
		}
		in := &deliveryv1.StagedInput{State: gone}
		cause := &deliveryv1.DeliveryError{Reason: apierror.ReasonName(errorsv1.ErrorReason_ERROR_REASON_SERVICE_STOPPED), Message: msg, Code: int32(codes.Unavailable)}
		_, err := s.fail(ctx, d, []phase{phaseReceiving}, phaseFailed, change{input: in, claim: true}, stepConvert, cause, fixContext{})
		if _, ok := isWrongPhase(err); ok {
			return nil
		}
		return err
	}
	in := &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED, Bytes: held,
		ExpireTime: timestamppb.New(time.Now().Add(s.cfg.ResumeWindow))}
	_, _, err := s.move(ctx, d.GetName(), []phase{phaseReceiving}, phaseInterrupted, change{input: in, claim: true})
	if _, ok := isWrongPhase(err); ok {
		return nil
	}
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "took over an interrupted delivery: resumable", slog.Int64("staged_bytes", held))
	s.expireAfter(d.GetName(), s.cfg.ResumeWindow)
	return nil
}

// stagedSource reads a delivery's whole input back from staging.
type stagedSource struct {
	r    io.Reader
	prog *progress
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

// interruptedUploads answers the recorded uploads of a delivery that S3
// still holds, with their parts, by key; an upload S3 no longer has (it
// completed, or was aborted) is rewritten from scratch.
func (s *Service) interruptedUploads(ctx context.Context, delivery string, client *s3.Client, bucket string) (map[string]resumable, error) {
	writes, err := s.store.Writes(ctx, delivery)
	if err != nil {
		return nil, err
	}
	out := map[string]resumable{}
	for _, w := range writes {
		if w.UploadID == "" || w.Bucket != bucket {
			continue
		}
		r := resumable{uploadID: w.UploadID}
		in := &s3.ListPartsInput{Bucket: aws.String(w.Bucket), Key: aws.String(w.Key), UploadId: aws.String(w.UploadID)}
		for {
			page, err := client.ListParts(ctx, in)
			if awserror.NoSuchUpload(err) || awserror.NoSuchBucket(err) {
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
		if awserror.NoSuchBucket(err) {
			continue
		}
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
			if err != nil && !awserror.NoSuchUpload(err) && !awserror.NoSuchBucket(err) {
				errs = append(errs, fmt.Errorf("abort the upload of %s: %w", w.Key, err))
			}
		}
		// A bucket that does not exist holds nothing to take back (a
		// misspelled one, fixed since).
		if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(w.Bucket), Key: aws.String(w.Key), ExpectedBucketOwner: owner}); err != nil && !awserror.NoSuchBucket(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", w.Key, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return s.store.ForgetWrites(ctx, delivery)
}

// live reports whether this process runs the delivery now.
func (s *Service) live(name string) bool {
	_, ok := s.running.Load(name)
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

// restart answers the source of another attempt: every byte staged so
// far, read back and verified, then the rest of the live stream (whose
// buffered bytes are already among the staged ones).
func (s *Service) restart(ctx context.Context, j *job, src source) (source, io.Closer, error) {
	w := j.w
	if w != nil {
		if err := w.Flush(); err != nil { // all received is readable
			return nil, nil, err
		}
	}
	r, err := s.staging.Open(ctx, deliveryID(j.d.GetName()))
	if err != nil {
		return nil, nil, err
	}
	if j.staged() {
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
	a, err := s.access(ctx, dest, nil)
	if err != nil {
		return err
	}
	return s.takeBack(ctx, d.GetName(), dest, a.client(func() {}))
}

// abortEmpty aborts the recorded uploads of a delivery that stored no part
// (nothing to continue), and forgets them.
func (s *Service) abortEmpty(ctx context.Context, d *deliveryv1.Delivery, dest *destinationv1.Destination) error {
	ctx = context.WithoutCancel(ctx)
	writes, err := s.store.Writes(ctx, d.GetName())
	if err != nil || !slices.ContainsFunc(writes, func(w store.Write) bool { return w.UploadID != "" }) {
		return err
	}
	a, err := s.access(ctx, dest, nil)
	if err != nil {
		return err
	}
	client := a.client(func() {})
	owner := optional(dest.GetExpectedBucketOwner())
	var errs []error
	for _, w := range writes {
		if w.UploadID == "" {
			continue
		}
		page, err := client.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(w.Bucket), Key: aws.String(w.Key), UploadId: aws.String(w.UploadID), MaxParts: aws.Int32(1)})
		if err == nil && len(page.Parts) > 0 {
			continue
		}
		if err == nil || awserror.NoSuchUpload(err) || awserror.NoSuchBucket(err) {
			_, err = client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(w.Bucket), Key: aws.String(w.Key), UploadId: aws.String(w.UploadID), ExpectedBucketOwner: owner})
			if err == nil || awserror.NoSuchUpload(err) || awserror.NoSuchBucket(err) {
				err = s.store.ClearUpload(ctx, d.GetName(), w.Key, w.UploadID)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", w.Key, err))
		}
	}
	return errors.Join(errs...)
}
