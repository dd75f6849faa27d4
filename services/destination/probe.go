package destination

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/awserror"
	"github.com/sluicehq/sluice/pkg/connectiontest"
	"github.com/sluicehq/sluice/pkg/multipart"
	"github.com/sluicehq/sluice/pkg/outputspec"
)

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// probe proves that Sluice can write under the destination's prefix with
// its own settings: a small object written and read back, a multipart
// upload started and aborted, and the object deleted. Whatever fails,
// nothing is left behind that Sluice may delete.
func (s *Service) probe(ctx context.Context, d *destinationv1.Destination, access *credentialv1.TemporaryAccess) *credentialv1.TestResult {
	bucket := d.GetBucketOverride()
	if bucket == "" {
		bucket = access.GetBucket()
	}
	client := s.cfg.AWS.S3(s.cfg.AWS.Static(aws.Credentials{
		AccessKeyID: access.GetAccessKeyId(), SecretAccessKey: access.GetSecretAccessKey(), SessionToken: access.GetSessionToken(),
	}), access.GetRegion())
	r := connectiontest.New(ctx, bucket)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	key := d.GetPrefix() + ".sluice-connection-test-" + hex.EncodeToString(b)
	o := outputspec.Object(d, bucket, key)
	written := false
	put := func(o multipart.Object) error {
		_, err := client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("Sluice connection test; safe to delete.\n"),
			ServerSideEncryption: o.ServerSideEncryption, SSEKMSKeyId: optional(o.SSEKMSKeyID), ACL: o.ACL, StorageClass: o.StorageClass,
			Tagging: optional(o.Tagging), ExpectedBucketOwner: optional(o.ExpectedBucketOwner),
		})
		if err == nil {
			written = true
		}
		return err
	}
	r.Check("put_object", func() error {
		err := put(o)
		if err == nil || awserror.Classify(err, bucket).Reason != errorsv1.ErrorReason_ERROR_REASON_ACCESS_DENIED {
			return err
		}
		// S3 answers a bare AccessDenied whether s3:PutObject or the
		// permission for a header is missing: find which by dropping the
		// tags, then the ACL.
		for _, try := range []struct {
			drop       func(*multipart.Object) bool
			permission string
		}{
			{func(x *multipart.Object) bool { had := x.Tagging != ""; x.Tagging = ""; return had }, "s3:PutObjectTagging"},
			{func(x *multipart.Object) bool { had := x.ACL != ""; x.ACL = ""; return had }, "s3:PutObjectAcl"},
		} {
			without := o
			if !try.drop(&without) || put(without) != nil {
				continue
			}
			return &awserror.Cause{Reason: errorsv1.ErrorReason_ERROR_REASON_ACCESS_DENIED, MissingPermission: try.permission,
				Message: fmt.Sprintf("writing to bucket %q works, but not with the destination's settings: grant %s on the prefix to the role or user", bucket, try.permission)}
		}
		return err
	})
	r.Check("head_object", func() error {
		_, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ExpectedBucketOwner: optional(o.ExpectedBucketOwner)})
		return err
	})
	r.Check("multipart_upload", func() error {
		up, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
			Bucket: aws.String(bucket), Key: aws.String(key + ".multipart"),
			ServerSideEncryption: o.ServerSideEncryption, SSEKMSKeyId: optional(o.SSEKMSKeyID), ACL: o.ACL, StorageClass: o.StorageClass,
			Tagging: optional(o.Tagging), ExpectedBucketOwner: optional(o.ExpectedBucketOwner),
		})
		if err != nil {
			return err
		}
		_, err = client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key + ".multipart"), UploadId: up.UploadId})
		if err != nil {
			// Without the permission the upload cannot be aborted here: say
			// so, and let a lifecycle rule or the bucket owner remove it.
			cause := awserror.Classify(err, bucket)
			cause.Message += fmt.Sprintf("; an incomplete multipart upload of %s.multipart was left: abort it, or let the bucket's lifecycle rule for incomplete uploads remove it", key)
			return cause
		}
		return nil
	})
	if written {
		// Runs even after a failed check: the probe must not stay.
		failed := r.Failed()
		check := func() error {
			_, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ExpectedBucketOwner: optional(o.ExpectedBucketOwner)})
			if err != nil {
				cause := awserror.Classify(err, bucket)
				cause.Message += fmt.Sprintf("; the probe object %s was left behind: delete it", key)
				return cause
			}
			return nil
		}
		if failed {
			if err := check(); err != nil {
				res := r.Result()
				res.Checks[len(res.Checks)-1].Message += "; " + awserror.Classify(err, bucket).Message
			}
		} else {
			r.Check("delete_object", check)
		}
	}
	return r.Result()
}
