package destination

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/awserror"
	"github.com/sluicehq/sluice/pkg/connectiontest"
)

// objectSettings are the headers every object of d is written with.
type objectSettings struct {
	sse          s3types.ServerSideEncryption
	kmsKey       string
	acl          s3types.ObjectCannedACL
	storageClass s3types.StorageClass
	tagging      string
	owner        string
}

func settingsOf(d *destinationv1.Destination) objectSettings {
	o := objectSettings{owner: d.GetExpectedBucketOwner()}
	switch d.GetEncryption().GetKind() {
	case destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_S3:
		o.sse = s3types.ServerSideEncryptionAes256
	case destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_KMS:
		o.sse, o.kmsKey = s3types.ServerSideEncryptionAwsKms, d.GetEncryption().GetKmsKeyId()
	}
	o.acl = map[destinationv1.CannedAcl]s3types.ObjectCannedACL{
		destinationv1.CannedAcl_CANNED_ACL_PRIVATE:                   s3types.ObjectCannedACLPrivate,
		destinationv1.CannedAcl_CANNED_ACL_BUCKET_OWNER_FULL_CONTROL: s3types.ObjectCannedACLBucketOwnerFullControl,
		destinationv1.CannedAcl_CANNED_ACL_BUCKET_OWNER_READ:         s3types.ObjectCannedACLBucketOwnerRead,
	}[d.GetCannedAcl()]
	o.storageClass = map[destinationv1.StorageClass]s3types.StorageClass{
		destinationv1.StorageClass_STORAGE_CLASS_STANDARD:            s3types.StorageClassStandard,
		destinationv1.StorageClass_STORAGE_CLASS_STANDARD_IA:         s3types.StorageClassStandardIa,
		destinationv1.StorageClass_STORAGE_CLASS_ONEZONE_IA:          s3types.StorageClassOnezoneIa,
		destinationv1.StorageClass_STORAGE_CLASS_INTELLIGENT_TIERING: s3types.StorageClassIntelligentTiering,
		destinationv1.StorageClass_STORAGE_CLASS_GLACIER_IR:          s3types.StorageClassGlacierIr,
		destinationv1.StorageClass_STORAGE_CLASS_GLACIER:             s3types.StorageClassGlacier,
		destinationv1.StorageClass_STORAGE_CLASS_DEEP_ARCHIVE:        s3types.StorageClassDeepArchive,
	}[d.GetStorageClass()]
	if len(d.GetTags()) > 0 {
		q := url.Values{}
		for k, v := range d.GetTags() {
			q.Set(k, v)
		}
		o.tagging = q.Encode()
	}
	return o
}

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
	o := settingsOf(d)
	r := connectiontest.New(ctx, bucket)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	key := d.GetPrefix() + ".sluice-connection-test-" + hex.EncodeToString(b)
	written := false
	put := func(o objectSettings) error {
		_, err := client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader("Sluice connection test; safe to delete.\n"),
			ServerSideEncryption: o.sse, SSEKMSKeyId: optional(o.kmsKey), ACL: o.acl, StorageClass: o.storageClass,
			Tagging: optional(o.tagging), ExpectedBucketOwner: optional(o.owner),
		})
		if err == nil {
			written = true
		}
		return err
	}
	r.Check("put_object", func() error {
		err := put(o)
		if err == nil || awserror.Classify(err, bucket).Reason != awserror.AccessDenied {
			return err
		}
		// S3 answers a bare AccessDenied whether s3:PutObject or the
		// permission for a header is missing: find which by dropping the
		// tags, then the ACL.
		for _, try := range []struct {
			drop       func(*objectSettings) bool
			permission string
		}{
			{func(x *objectSettings) bool { had := x.tagging != ""; x.tagging = ""; return had }, "s3:PutObjectTagging"},
			{func(x *objectSettings) bool { had := x.acl != ""; x.acl = ""; return had }, "s3:PutObjectAcl"},
		} {
			without := o
			if !try.drop(&without) || put(without) != nil {
				continue
			}
			return &awserror.Cause{Reason: awserror.AccessDenied, MissingPermission: try.permission,
				Message: fmt.Sprintf("writing to bucket %q works, but not with the destination's settings: grant %s on the prefix to the role or user", bucket, try.permission)}
		}
		return err
	})
	r.Check("head_object", func() error {
		_, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ExpectedBucketOwner: optional(o.owner)})
		return err
	})
	r.Check("multipart_upload", func() error {
		up, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
			Bucket: aws.String(bucket), Key: aws.String(key + ".multipart"),
			ServerSideEncryption: o.sse, SSEKMSKeyId: optional(o.kmsKey), ACL: o.acl, StorageClass: o.storageClass,
			Tagging: optional(o.tagging), ExpectedBucketOwner: optional(o.owner),
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
			_, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ExpectedBucketOwner: optional(o.owner)})
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
