package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// sweep aborts the multipart uploads under the prefixes deliveries have
// written that no running delivery recorded and that started more than
// SweepGrace ago: what a crash, a lost abort or another tool left behind,
// which S3 would otherwise keep, and bill, forever. It answers how many it
// aborted.
func (s *Service) sweep(ctx context.Context, log *slog.Logger) (int, error) {
	dests, err := s.store.Destinations(ctx)
	if err != nil {
		return 0, err
	}
	aborted := 0
	var errs []error
	seen := map[string]bool{}
	for _, name := range dests {
		// Recorded uploads are read per destination, after the listing
		// below could have found a delivery's new upload, never before.
		dest, client, bucket, err := s.bucketAccess(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		where := bucket + "\x00" + dest.GetPrefix()
		if seen[where] {
			continue
		}
		seen[where] = true
		var marker, idMarker *string
		for {
			// The whole bucket, filtered here: MinIO lists uploads by an
			// exact key only, and a prefix would find none.
			page, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{
				Bucket: aws.String(bucket), KeyMarker: marker, UploadIdMarker: idMarker,
				ExpectedBucketOwner: optional(dest.GetExpectedBucketOwner()),
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("list uploads in %s/%s: %w", bucket, dest.GetPrefix(), err))
				break
			}
			owned, err := s.store.RecordedUploads(ctx)
			if err != nil {
				return aborted, err
			}
			for _, u := range page.Uploads {
				id, key := aws.ToString(u.UploadId), aws.ToString(u.Key)
				age := time.Since(aws.ToTime(u.Initiated))
				if !strings.HasPrefix(key, dest.GetPrefix()) || owned[id] || age < s.cfg.SweepGrace {
					continue
				}
				_, err := client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
					Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(id), ExpectedBucketOwner: optional(dest.GetExpectedBucketOwner()),
				})
				if err != nil && !isNoSuchUpload(err) {
					errs = append(errs, fmt.Errorf("abort %s of %s: %w", id, key, err))
					continue
				}
				aborted++
				log.InfoContext(ctx, "sweeper aborted a multipart upload no delivery owns",
					slog.String("bucket", bucket), slog.String("key", key), slog.String("upload_id", id), slog.Duration("age", age.Round(time.Second)))
			}
			if !aws.ToBool(page.IsTruncated) {
				break
			}
			marker, idMarker = page.NextKeyMarker, page.NextUploadIdMarker
		}
	}
	return aborted, errors.Join(errs...)
}
