package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/awserror"
	"github.com/sluicehq/sluice/services/delivery/store"
)

// sweep aborts multipart uploads that Sluice recorded and that no running
// delivery will finish, once they are older than SweepGrace: what a crash,
// a lost abort or a failed take-back left behind, which S3 would otherwise
// keep, and bill, forever. Sluice writes into buckets it does not own, so
// it touches nothing it did not record: an upload under a destination's
// prefix that no record names (a customer's own) is never listed, let
// alone aborted. It answers how many it aborted.
//
// Every object key is recorded before its upload is created, and the
// upload's id right after; a crash between the two leaves an upload whose
// id was never recorded, so the sweeper also aborts uploads of a recorded
// key begun after the key was recorded whose id no record holds.
func (s *Service) sweep(ctx context.Context, log *slog.Logger) (int, error) {
	writes, err := s.store.RecordedWrites(ctx)
	if err != nil {
		return 0, err
	}
	recorded := map[string]bool{}
	for _, w := range writes {
		if w.UploadID != "" {
			recorded[w.UploadID] = true
		}
	}
	type access struct {
		client *s3.Client
		owner  *string
		err    error
	}
	clients := map[string]access{}
	accessTo := func(destination string) access {
		a, ok := clients[destination]
		if !ok {
			ba, err := s.accessTo(ctx, destination)
			a = access{err: err}
			if err == nil {
				a.client, a.owner = ba.client(func() {}), optional(ba.dest.GetExpectedBucketOwner())
			}
			clients[destination] = a
		}
		return a
	}
	aborted := 0
	var errs []error
	abort := func(a access, w store.RecordedWrite, id string, age time.Duration, why string) bool {
		_, err := a.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(w.Bucket), Key: aws.String(w.Key), UploadId: aws.String(id), ExpectedBucketOwner: a.owner,
		})
		if err != nil && !awserror.NoSuchUpload(err) {
			errs = append(errs, fmt.Errorf("abort %s of %s: %w", id, w.Key, err))
			return false
		}
		if err == nil {
			aborted++
			log.InfoContext(ctx, "sweeper aborted a multipart upload Sluice recorded and no delivery will finish",
				slog.String("delivery", w.Delivery), slog.String("bucket", w.Bucket), slog.String("key", w.Key),
				slog.String("upload_id", id), slog.Duration("age", age.Round(time.Second)), slog.String("why", why))
		}
		return true
	}
	// ended are succeeded deliveries with records left over; pending those
	// with an upload still open, whose records must stay to find it again.
	ended, pending := map[string]bool{}, map[string]bool{}
	for _, w := range writes {
		if w.Destination == "" {
			// The delivery is gone: nothing will take its writes back, and
			// without its destination there is no access to abort them.
			errs = append(errs, fmt.Errorf("recorded write %s of %s: its delivery is gone", w.Key, w.Delivery))
			continue
		}
		a := accessTo(w.Destination)
		if a.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", w.Destination, a.err))
			continue
		}
		// Uploads of this key whose id no record holds, begun after the
		// key was recorded: the crash window's, Sluice's by construction.
		stray, err := s.unrecordedUploads(ctx, a.client, a.owner, w.Write, w.Recorded, recorded)
		if err != nil {
			errs = append(errs, err)
		}
		for _, u := range stray {
			age := time.Since(aws.ToTime(u.Initiated))
			if age < s.cfg.SweepGrace || !abort(a, w, aws.ToString(u.UploadId), age, "its id was never recorded") {
				pending[w.Delivery] = true // the record must stay until it is gone
			}
		}
		if w.Running || w.Kept {
			// The running delivery, or its takeover, finishes it; a kept
			// input's retry continues it, or its expiry takes it back.
			continue
		}
		// No work will finish this write: its delivery ended with a
		// failure whose take-back did not complete (or succeeded and its
		// records outlived it).
		if w.UploadID != "" {
			age := time.Since(w.Recorded)
			switch {
			case age < s.cfg.SweepGrace:
				pending[w.Delivery] = true
			case abort(a, w, w.UploadID, age, "its delivery is "+w.State.String()+" and no work will finish it"):
				if err := s.store.ClearUpload(ctx, w.Delivery, w.Key, w.UploadID); err != nil {
					errs = append(errs, err)
				}
			default:
				pending[w.Delivery] = true
			}
		}
		if w.State == deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED {
			ended[w.Delivery] = true
		}
	}
	// A delivery that succeeded answered its objects: its records are only
	// left over (forgetting them failed), never a reason to delete.
	for delivery := range ended {
		if pending[delivery] {
			continue
		}
		if err := s.store.ForgetWrites(ctx, delivery); err != nil {
			errs = append(errs, err)
		}
	}
	return aborted, errors.Join(errs...)
}

// unrecordedUploads answers the open uploads of w's key whose ids no
// record holds, begun after the key was recorded (less a minute for the
// clocks of S3 and this host). Listing by the exact key: MinIO lists
// uploads of an exact key only, and S3 lists those the key starts.
func (s *Service) unrecordedUploads(ctx context.Context, client *s3.Client, owner *string, w store.Write, since time.Time, recorded map[string]bool) ([]types.MultipartUpload, error) {
	var out []types.MultipartUpload
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(w.Bucket), Prefix: aws.String(w.Key), ExpectedBucketOwner: owner}
	for {
		page, err := client.ListMultipartUploads(ctx, in)
		if err != nil {
			return out, fmt.Errorf("list the uploads of %s/%s: %w", w.Bucket, w.Key, err)
		}
		for _, u := range page.Uploads {
			if aws.ToString(u.Key) == w.Key && !recorded[aws.ToString(u.UploadId)] && !aws.ToTime(u.Initiated).Before(since.Add(-time.Minute)) {
				out = append(out, u)
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			return out, nil
		}
		in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	}
}
