// Package awserror classifies every error from AWS (S3, STS, KMS), in this
// one place, into a cause with a stable reason, the permission that is
// missing when there is one, whether retrying may help, and words a business
// user can act on. Raw AWS messages never reach users.
package awserror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
)

// Cause is a classified AWS failure.
type Cause struct {
	// Reason is the stable reason: ROLE_NOT_ASSUMABLE, INVALID_CREDENTIALS,
	// BUCKET_NOT_FOUND, INVALID_BUCKET_NAME, ACCESS_DENIED, REGION_MISMATCH,
	// KMS_KEY_NOT_USABLE, TRANSIENT or UNKNOWN.
	Reason errorsv1.ErrorReason
	// Message says what happened and what to do, in plain words.
	Message string
	// MissingPermission is the IAM action refused, for AccessDenied.
	MissingPermission string
	// Retryable is true for faults that go away by themselves.
	Retryable bool
	// Code is AWS's error code, for logs only.
	Code string
	err  error
}

func (c *Cause) Error() string {
	return fmt.Sprintf("%s: %s", apierror.ReasonName(c.Reason), c.Message)
}

// Unwrap keeps the SDK error for logs and errors.As.
func (c *Cause) Unwrap() error { return c.err }

// actions maps SDK operations to the IAM action they need.
var actions = map[string]string{
	"AssumeRole":              "sts:AssumeRole",
	"GetCallerIdentity":       "sts:GetCallerIdentity",
	"GetSessionToken":         "sts:GetSessionToken",
	"HeadBucket":              "s3:ListBucket",
	"ListObjectsV2":           "s3:ListBucket",
	"GetBucketLocation":       "s3:GetBucketLocation",
	"PutObject":               "s3:PutObject",
	"CreateMultipartUpload":   "s3:PutObject",
	"UploadPart":              "s3:PutObject",
	"CompleteMultipartUpload": "s3:PutObject",
	"AbortMultipartUpload":    "s3:AbortMultipartUpload",
	"ListParts":               "s3:ListMultipartUploadParts",
	"HeadObject":              "s3:GetObject",
	"GetObject":               "s3:GetObject",
	"DeleteObject":            "s3:DeleteObject",
	"PutObjectTagging":        "s3:PutObjectTagging",
	"PutObjectAcl":            "s3:PutObjectAcl",
	"GenerateDataKey":         "kms:GenerateDataKey",
	"Decrypt":                 "kms:Decrypt",
	"Encrypt":                 "kms:Encrypt",
	"DescribeKey":             "kms:DescribeKey",
}

// Classify turns err from an AWS call into a Cause; bucket names the
// bucket (or access point) in messages. It answers nil for nil.
func Classify(err error, bucket string) *Cause {
	if err == nil {
		return nil
	}
	var already *Cause
	if errors.As(err, &already) {
		return already
	}
	c := &Cause{err: err}
	var op *smithy.OperationError
	operation, service := "", ""
	if errors.As(err, &op) {
		operation, service = op.OperationName, op.ServiceID
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		c.Code = api.ErrorCode()
	}
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	action := actions[operation]
	switch {
	case errors.Is(err, context.Canceled):
		c.Reason, c.Message = errorsv1.ErrorReason_ERROR_REASON_UNKNOWN, "the request was cancelled"
	case operation == "AssumeRole" && (c.Code == "AccessDenied" || status == http.StatusForbidden):
		c.Reason = errorsv1.ErrorReason_ERROR_REASON_ROLE_NOT_ASSUMABLE
		c.Message = "Sluice could not assume the role: check that the role's trust policy names Sluice's platform role as principal and requires exactly this credential's External ID, and that the role ARN is right"
	case in(c.Code, "InvalidClientTokenId", "InvalidAccessKeyId", "SignatureDoesNotMatch", "UnrecognizedClientException", "ExpiredToken", "TokenRefreshRequired"):
		c.Reason = errorsv1.ErrorReason_ERROR_REASON_INVALID_CREDENTIALS
		c.Message = "AWS does not accept these credentials: check the access key id and secret access key (or that the key is active), then update the credential"
	case c.Code == "InvalidBucketName":
		c.Reason = errorsv1.ErrorReason_ERROR_REASON_INVALID_BUCKET_NAME
		c.Message = fmt.Sprintf("%q is not a valid bucket name: verify the name in the AWS console and correct it", bucket)
	case c.Code == "NoSuchBucket" || (operation == "HeadBucket" && status == http.StatusNotFound):
		c.Reason = errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND
		c.Message = fmt.Sprintf("bucket %q does not exist: verify the name in the AWS console and correct it", bucket)
	case in(c.Code, "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException") || status == http.StatusMovedPermanently:
		c.Reason = errorsv1.ErrorReason_ERROR_REASON_REGION_MISMATCH
		c.Message = fmt.Sprintf("bucket %q is in another region than the one configured: correct the region", bucket)
	case service == "KMS" || strings.HasPrefix(c.Code, "KMS.") || strings.HasPrefix(c.Code, "kms:") || in(c.Code, "DisabledException", "KMSInvalidStateException", "NotFoundException", "KMS.DisabledException", "KMS.NotFoundException", "KMS.KMSInvalidStateException"):
		c.Reason = errorsv1.ErrorReason_ERROR_REASON_KMS_KEY_NOT_USABLE
		if strings.Contains(c.Code, "AccessDenied") || status == http.StatusForbidden {
			// Writing with SSE-KMS needs a data key; reading needs to decrypt it.
			switch service {
			case "KMS":
				c.MissingPermission = action
			case "S3":
				c.MissingPermission = "kms:GenerateDataKey"
				if operation == "GetObject" || operation == "HeadObject" {
					c.MissingPermission = "kms:Decrypt"
				}
			}
		}
		c.Message = "the KMS key cannot be used: check that it exists, is enabled, and that the role may use it for encryption"
	case service == "STS" && (in(c.Code, "AccessDenied") || status == http.StatusForbidden):
		c.Reason = errorsv1.ErrorReason_ERROR_REASON_ACCESS_DENIED
		c.MissingPermission = action
		c.Message = fmt.Sprintf("the credential's IAM user may not call %s: allow it in the user's policy", action)
	case in(c.Code, "AccessDenied", "Forbidden", "AllAccessDisabled") || status == http.StatusForbidden:
		c.Reason = errorsv1.ErrorReason_ERROR_REASON_ACCESS_DENIED
		c.MissingPermission = action
		if action != "" {
			c.Message = fmt.Sprintf("access to bucket %q is denied: grant %s on it (and the prefix) to the role or user", bucket, action)
		} else {
			c.Message = fmt.Sprintf("access to bucket %q is denied: check the bucket policy and the role's permissions", bucket)
		}
	case untrusted(err):
		// Before transient: the TLS error is also a net.Error, and no
		// retry makes a certificate trusted.
		c.Reason = errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION
		c.Message = "Sluice does not trust the endpoint's TLS certificate: an S3-compatible store (or STS, KMS) behind a private CA needs that CA given to Sluice's services with --aws-ca-bundle (or AWS_CA_BUNDLE)"
	case transient(err, c.Code, status):
		c.Reason, c.Retryable = errorsv1.ErrorReason_ERROR_REASON_TRANSIENT, true
		c.Message = "AWS did not answer in time or asked to slow down; Sluice retries by itself"
	default:
		c.Reason = errorsv1.ErrorReason_ERROR_REASON_UNKNOWN
		c.Message = "AWS refused the request for a reason Sluice does not recognise; the details are in the service log"
	}
	return c
}

func transient(err error, code string, status int) bool {
	// ClientDisconnected (499) is MinIO saying the connection dropped
	// before it answered: nothing about the request was wrong.
	if in(code, "SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable", "Throttling", "ThrottlingException", "RequestLimitExceeded", "IDPCommunicationError", "ClientDisconnected") ||
		status == 499 {
		return true
	}
	if status >= 500 {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) || errors.Is(err, context.DeadlineExceeded)
}

// untrusted reports whether err is a TLS certificate the client refused.
func untrusted(err error) bool {
	var verify *tls.CertificateVerificationError
	var authority x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &verify) || errors.As(err, &authority) || errors.As(err, &host) || errors.As(err, &invalid)
}

func in(s string, set ...string) bool { return slices.Contains(set, s) }

// NoSuchUpload reports whether S3 answered that a multipart upload does not
// exist (it completed, or was aborted): for those aborting or resuming
// one, nothing is left to do.
func NoSuchUpload(err error) bool {
	var api interface{ ErrorCode() string }
	return errors.As(err, &api) && api.ErrorCode() == "NoSuchUpload"
}

// NoSuchBucket reports whether S3 answered that the bucket does not exist:
// nothing can be in it to take back or continue.
func NoSuchBucket(err error) bool {
	var api interface{ ErrorCode() string }
	return errors.As(err, &api) && api.ErrorCode() == "NoSuchBucket"
}

// FromAWS reports whether err came back from an AWS operation (S3, STS,
// KMS) rather than from Sluice itself.
func FromAWS(err error) bool {
	var op *smithy.OperationError
	return errors.As(err, &op)
}
