package testenv_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/sluicehq/sluice/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// An object put into MinIO reads back byte-identical, through a multipart
// upload as Sluice will use it.
func TestMinIORoundTrip(t *testing.T) {
	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	client := m.S3("", "")
	ctx := context.Background()

	want := make([]byte, 6<<20) // over the 5 MiB part minimum: two parts
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	key := aws.String("roundtrip/object.bin")
	up, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: key})
	if err != nil {
		t.Fatalf("create multipart upload: %v", err)
	}
	var parts []s3types.CompletedPart
	for i, chunk := range [][]byte{want[:5<<20], want[5<<20:]} {
		n := int32(i + 1)
		out, err := client.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: key, UploadId: up.UploadId, PartNumber: &n, Body: bytes.NewReader(chunk)})
		if err != nil {
			t.Fatalf("upload part %d: %v", n, err)
		}
		parts = append(parts, s3types.CompletedPart{ETag: out.ETag, PartNumber: &n})
	}
	if _, err := client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &bucket, Key: key, UploadId: up.UploadId, MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		t.Fatalf("complete: %v", err)
	}
	got, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: key})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	defer got.Body.Close()
	b, err := io.ReadAll(got.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("read back %d bytes, differ from the %d written", len(b), len(want))
	}
}

// Wrong keys are refused: MinIO really authenticates.
func TestMinIORejectsWrongKeys(t *testing.T) {
	m := testenv.SharedMinIO(t)
	_, err := m.S3("nobody", "wrong-secret-123").ListBuckets(context.Background(), &s3.ListBucketsInput{})
	if apiCode(err) != "InvalidAccessKeyId" {
		t.Fatalf("ListBuckets with wrong keys: got %v, want InvalidAccessKeyId", err)
	}
}

// moto enforces the trust policy's External ID and the role's permissions.
func TestMotoAssumeRoleExternalID(t *testing.T) {
	m := testenv.SharedMoto(t)
	ctx := context.Background()
	readOnly := func(bucket string) string {
		return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:ListBucket","s3:GetObject"],"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`, bucket, bucket)
	}
	// The bucket name is chosen by NewCustomerRole, so shape the policy
	// around a wildcard that covers it.
	role := testenv.NewCustomerRole(t, m, "customer-readonly", "ext-id-right.value", readOnly("customer-*"))

	stsc := m.STS(m.Platform)
	wrong, err := stsc.AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: &role.ARN, RoleSessionName: aws.String("sluice-test"), ExternalId: aws.String("ext-id-wrong"),
	})
	if err == nil {
		t.Fatalf("AssumeRole with the wrong External ID succeeded: %+v", wrong.AssumedRoleUser)
	}
	if c := apiCode(err); c != "AccessDenied" {
		t.Fatalf("AssumeRole with the wrong External ID: got %v, want AccessDenied", err)
	}

	out, err := stsc.AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: &role.ARN, RoleSessionName: aws.String("sluice-test"), ExternalId: aws.String(role.ExternalID),
	})
	if err != nil {
		t.Fatalf("AssumeRole with the right External ID: %v", err)
	}
	session := aws.Credentials{
		AccessKeyID: *out.Credentials.AccessKeyId, SecretAccessKey: *out.Credentials.SecretAccessKey, SessionToken: *out.Credentials.SessionToken,
	}
	s3c := m.S3(session)
	if _, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &role.Bucket}); err != nil {
		t.Fatalf("list with the role's session: %v", err)
	}
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &role.Bucket, Key: aws.String("x"), Body: strings.NewReader("x")})
	if c := apiCode(err); c != "AccessDenied" {
		t.Fatalf("PutObject without s3:PutObject in the role policy: got %v, want AccessDenied", err)
	}

	// The unauthenticated setup window is closed: unknown keys are refused.
	_, err = m.STS(aws.Credentials{AccessKeyID: "AKIAUNKNOWN000000000", SecretAccessKey: "x"}).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err == nil {
		t.Fatal("moto answered a request signed with an unknown key")
	}
}

// The throwaway cluster is a live PostgreSQL that takes DDL and queries.
func TestPostgresLive(t *testing.T) {
	db, err := sql.Open("pgx", testenv.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (id int PRIMARY KEY, v text)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t VALUES (1, 'one')`); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var v, version string
	if err := db.QueryRowContext(ctx, `SELECT v, version() FROM t WHERE id = 1`).Scan(&v, &version); err != nil {
		t.Fatalf("select: %v", err)
	}
	if v != "one" || !strings.HasPrefix(version, "PostgreSQL") {
		t.Fatalf("got %q on %q", v, version)
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// The fault proxy passes requests through with their signatures intact,
// answers S3's own error codes for the requests it is told to, and holds
// requests until released.
func TestS3FaultProxy(t *testing.T) {
	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	f := testenv.NewS3Fault(t, m)
	client := f.S3(m)
	ctx := context.Background()
	put := func(key string) error {
		_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: strings.NewReader("x")})
		return err
	}
	if err := put("through"); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	f.Fail(testenv.SlowDown, 1, func(r testenv.S3Request) bool { return r.Bucket == bucket && r.Method == http.MethodPut })
	if err := put("slow"); apiCode(err) != "SlowDown" {
		t.Fatalf("first put after Fail: %v, want SlowDown", err)
	}
	if err := put("slow"); err != nil {
		t.Fatalf("second put after Fail(…, 1, …): %v", err)
	}
	f.Fail(testenv.InternalError, -1, func(r testenv.S3Request) bool { return r.Key == "broken" })
	for range 2 {
		if err := put("broken"); apiCode(err) != "InternalError" {
			t.Fatalf("put of a broken key: %v, want InternalError", err)
		}
	}
	if f.Count(testenv.SlowDown) != 1 || f.Count(testenv.InternalError) != 2 {
		t.Fatalf("counted %d SlowDown, %d InternalError", f.Count(testenv.SlowDown), f.Count(testenv.InternalError))
	}
	f.Clear()
	f.Hold(func(r testenv.S3Request) bool { return r.Key == "held" })
	done := make(chan error, 1)
	go func() { done <- put("held") }()
	for f.Count("held") == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("a held put answered before Release: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	f.Release()
	if err := <-done; err != nil {
		t.Fatalf("held put after Release: %v", err)
	}
	if _, err := m.S3("", "").HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String("held")}); err != nil {
		t.Fatalf("the held put did not land: %v", err)
	}
}
