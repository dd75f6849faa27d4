package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/connectiontest"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// Test connection on MinIO, with users whose policies lack one permission
// at a time: each answer names that permission, and with every permission
// the bucket holds no probe afterwards. (MinIO writes tags without
// s3:PutObjectTagging, where AWS refuses, so that diagnosis cannot be shown
// here.)
func TestServeTestDestinationOnMinIO(t *testing.T) {
	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	r := startServeWith(t, func(c *serveConfig) { c.useMinIO(m) })
	ctx := context.Background()
	creds := credentialv1.NewCredentialServiceClient(r.conns["credential"])
	dests := destinationv1.NewDestinationServiceClient(r.conns["destination"])
	admin := r.token("acme", auth.PolicyAdministrator)
	const sandbox = "tenants/acme/environments/sandbox"
	all := []string{"s3:GetBucketLocation", "s3:ListBucket", "s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:PutObjectTagging"}
	for i, tc := range []struct {
		without string
		want    string
	}{
		{"", "put_object=PASSED head_object=PASSED multipart_upload=PASSED delete_object=PASSED"},
		{"s3:PutObject", "put_object=FAILED(ACCESS_DENIED s3:PutObject) head_object=SKIPPED multipart_upload=SKIPPED"},
		{"s3:GetObject", "put_object=PASSED head_object=FAILED(ACCESS_DENIED s3:GetObject) multipart_upload=SKIPPED"},
		{"s3:DeleteObject", "put_object=PASSED head_object=PASSED multipart_upload=PASSED delete_object=FAILED(ACCESS_DENIED s3:DeleteObject)"},
		{"s3:AbortMultipartUpload", "put_object=PASSED head_object=PASSED multipart_upload=FAILED(ACCESS_DENIED s3:AbortMultipartUpload)"},
	} {
		t.Run("without "+tc.without, func(t *testing.T) {
			var actions []string
			for _, a := range all {
				if a != tc.without {
					actions = append(actions, `"`+a+`"`)
				}
			}
			key := fmt.Sprintf("SLUICEDESTTEST%04d", i)
			secret := fmt.Sprintf("sluice-destination-test-secret-%04d", i)
			policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":[%s],"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`,
				strings.Join(actions, ","), bucket, bucket)
			if err := testenv.SetMinIOUser(ctx, m, key, secret, policy); err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("keys-%d", i)
			cred, err := creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: sandbox, CredentialId: id,
				Credential: &credentialv1.Credential{Bucket: bucket, Region: m.Region, Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: key, SecretAccessKey: secret}}}}, admin)
			if err != nil {
				t.Fatal(err)
			}
			d, err := dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: sandbox, DestinationId: "dest-" + id,
				Destination: &destinationv1.Destination{Credential: cred.GetName(), Prefix: "exports/" + id + "/", Tags: map[string]string{"team": "growth"},
					Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}}}}, admin)
			if err != nil {
				t.Fatal(err)
			}
			res, err := dests.TestDestination(ctx, &destinationv1.TestDestinationRequest{Name: d.GetName()}, admin)
			if err != nil {
				t.Fatal(err)
			}
			if got := connectiontest.Summary(res); got != tc.want || res.GetOk() != (tc.without == "") {
				t.Fatalf("checks %s, want %s", got, tc.want)
			}
			left, err := m.S3("", "").ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("exports/" + id + "/")})
			if err != nil {
				t.Fatal(err)
			}
			if tc.without != "s3:DeleteObject" && len(left.Contents) != 0 {
				t.Fatalf("the test left %d objects behind", len(left.Contents))
			}
		})
	}
}

// Encryption settings are tested as they will be used: on a MinIO with a
// KMS, a key that exists passes and one that does not is KMS_KEY_NOT_USABLE.
func TestServeTestDestinationEncryption(t *testing.T) {
	// MinIO takes any key name; a UUID-shaped one passes Sluice's AWS checks.
	const keyID, missing = "1234abcd-12ab-34cd-56ef-1234567890ab", "00000000-0000-0000-0000-000000000000"
	m := testenv.NewMinIOWithKMS(t, keyID)
	bucket := testenv.NewBucket(t, m)
	r := startServeWith(t, func(c *serveConfig) { c.useMinIO(m) })
	ctx := context.Background()
	creds := credentialv1.NewCredentialServiceClient(r.conns["credential"])
	dests := destinationv1.NewDestinationServiceClient(r.conns["destination"])
	admin := r.token("acme", auth.PolicyAdministrator)
	const sandbox = "tenants/acme/environments/sandbox"
	cred, err := creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: sandbox, CredentialId: "root",
		Credential: &credentialv1.Credential{Bucket: bucket, Region: m.Region, Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: m.RootUser, SecretAccessKey: m.RootPassword}}}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		enc  *destinationv1.Encryption
		want string
	}{
		{"sse-s3", &destinationv1.Encryption{Kind: destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_S3}, "put_object=PASSED head_object=PASSED multipart_upload=PASSED delete_object=PASSED"},
		{"sse-kms", &destinationv1.Encryption{Kind: destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_KMS, KmsKeyId: keyID}, "put_object=PASSED head_object=PASSED multipart_upload=PASSED delete_object=PASSED"},
		{"sse-kms-missing", &destinationv1.Encryption{Kind: destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_KMS, KmsKeyId: missing}, "put_object=FAILED(KMS_KEY_NOT_USABLE) head_object=SKIPPED multipart_upload=SKIPPED"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			d, err := dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: sandbox, DestinationId: tc.id,
				Destination: &destinationv1.Destination{Credential: cred.GetName(), Prefix: tc.id + "/", Encryption: tc.enc,
					Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Json{Json: &destinationv1.JsonFormat{}}}}}, admin)
			if err != nil {
				t.Fatal(err)
			}
			res, err := dests.TestDestination(ctx, &destinationv1.TestDestinationRequest{Name: d.GetName()}, admin)
			if err != nil {
				t.Fatal(err)
			}
			if got := connectiontest.Summary(res); got != tc.want {
				t.Fatalf("checks %s, want %s", got, tc.want)
			}
		})
	}
}
