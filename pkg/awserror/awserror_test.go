package awserror_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/awserror"
	"github.com/sluicehq/sluice/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Classify reads real answers from MinIO and moto, not hand-made errors.
func TestClassifyRealAnswers(t *testing.T) {
	ctx := context.Background()
	minio := testenv.SharedMinIO(t)
	root := minio.S3("", "")
	bucket := testenv.NewBucket(t, minio)
	moto := testenv.SharedMoto(t)
	role := testenv.NewCustomerRole(t, moto, "classify-role", "right-external-id", "")

	_, invalidName := root.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String("Not_A_Bucket")})
	_, missing := root.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String("no-such-bucket-at-all")})
	_, badKeys := minio.S3(minio.RootUser, "wrong-secret-wrong-secret").ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	_, assume := moto.STS(moto.Platform).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(role.ARN), RoleSessionName: aws.String("t"), ExternalId: aws.String("wrong")})
	_, unknownKey := moto.STS(aws.Credentials{AccessKeyID: "AKIAUNKNOWNKEY000000", SecretAccessKey: "x"}).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})

	tests := []struct {
		name       string
		err        error
		reason     errorsv1.ErrorReason
		permission string
	}{
		{"invalid bucket name", invalidName, errorsv1.ErrorReason_ERROR_REASON_INVALID_BUCKET_NAME, ""},
		{"missing bucket", missing, errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND, ""},
		{"wrong secret", badKeys, errorsv1.ErrorReason_ERROR_REASON_INVALID_CREDENTIALS, ""},
		{"wrong External ID", assume, errorsv1.ErrorReason_ERROR_REASON_ROLE_NOT_ASSUMABLE, ""},
		{"unknown key", unknownKey, errorsv1.ErrorReason_ERROR_REASON_INVALID_CREDENTIALS, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Fatal("the server accepted the request")
			}
			c := awserror.Classify(tt.err, "the-bucket")
			if c.Reason != tt.reason || c.MissingPermission != tt.permission {
				t.Fatalf("Classify(%v) = %s %q, want %s %q", tt.err, c.Reason, c.MissingPermission, tt.reason, tt.permission)
			}
			if c.Message == "" || strings.Contains(c.Message, "api error") || strings.Contains(c.Message, "StatusCode") {
				t.Fatalf("message is not for people: %q", c.Message)
			}
		})
	}
}

// A store behind a private CA that Sluice was not given answers with a
// TLS error, which is no network fault to retry but a setting to fix.
func TestClassifyUntrustedCertificate(t *testing.T) {
	m := testenv.NewMinIOWithTLS(t)
	client := s3.New(s3.Options{Region: m.Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(m.RootUser, m.RootPassword, "")})
	_, err := client.ListBuckets(context.Background(), &s3.ListBucketsInput{})
	if err == nil {
		t.Fatal("a client without the CA reached MinIO")
	}
	c := awserror.Classify(err, "b")
	if c.Reason != errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION || c.Retryable || !strings.Contains(c.Message, "--aws-ca-bundle") {
		t.Fatalf("Classify(%v) = %+v", err, c)
	}
	// With the CA the same request goes through: the refusal was the CA's.
	if _, err := m.S3("", "").ListBuckets(context.Background(), &s3.ListBucketsInput{}); err != nil {
		t.Fatal(err)
	}
}

func TestClassifyTransient(t *testing.T) {
	var netErr error = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	if c := awserror.Classify(netErr, "b"); c.Reason != errorsv1.ErrorReason_ERROR_REASON_TRANSIENT || !c.Retryable {
		t.Fatalf("a network error: %+v", c)
	}
	if awserror.Classify(nil, "b") != nil {
		t.Fatal("nil classified as a cause")
	}
	// MinIO's answer when the connection dropped before it answered (seen
	// on a loaded machine): retried, not an unknown refusal.
	dropped := &smithy.OperationError{ServiceID: "S3", OperationName: "PutObject", Err: &smithy.GenericAPIError{Code: "ClientDisconnected", Message: "Client disconnected before response was ready"}}
	if c := awserror.Classify(dropped, "b"); c.Reason != errorsv1.ErrorReason_ERROR_REASON_TRANSIENT || !c.Retryable {
		t.Fatalf("ClientDisconnected: %+v", c)
	}
}

// The two questions the delivery service asked of AWS errors itself now
// live here with the rest of the classification.
func TestNoSuchUploadAndFromAWS(t *testing.T) {
	gone := &smithy.OperationError{ServiceID: "S3", OperationName: "AbortMultipartUpload", Err: &smithy.GenericAPIError{Code: "NoSuchUpload"}}
	other := &smithy.OperationError{ServiceID: "S3", OperationName: "AbortMultipartUpload", Err: &smithy.GenericAPIError{Code: "AccessDenied"}}
	if !awserror.NoSuchUpload(fmt.Errorf("abort: %w", gone)) || awserror.NoSuchUpload(other) || awserror.NoSuchUpload(errors.New("NoSuchUpload")) {
		t.Error("NoSuchUpload")
	}
	if !awserror.FromAWS(fmt.Errorf("put: %w", other)) || awserror.FromAWS(errors.New("local")) {
		t.Error("FromAWS")
	}
}
