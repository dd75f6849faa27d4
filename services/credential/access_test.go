package credential

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/awsclient"
	"github.com/sluicehq/sluice/pkg/connectiontest"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// recorder keeps the bodies of the requests the service sends to AWS, so a
// test can assert on the request Sluice builds, not only on the answer.
type recorder struct {
	mu     sync.Mutex
	bodies []string
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(b))
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.mu.Unlock()
	}
	return http.DefaultClient.Do(req)
}

func (r *recorder) assumeRoleCalls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.bodies {
		if strings.Contains(b, "Action=AssumeRole") {
			out = append(out, b)
		}
	}
	return out
}

type awsFixture struct {
	svc    *Service
	grpc   *testenv.GRPC
	client credentialv1.CredentialServiceClient
	access credentialv1.CredentialAccessServiceClient
	admin  []any
	rec    *recorder
}

func startAWS(t *testing.T, platformARN string, endpoints awsclient.Endpoints, adjust ...func(*Config)) *awsFixture {
	t.Helper()
	rec := &recorder{}
	endpoints.HTTPClient = rec
	cfg := Config{
		DatabaseDSN:     "sqlite:" + filepath.Join(t.TempDir(), "credential.db"),
		PlatformRoleARN: platformARN,
		MasterKeyFile:   filepath.Join(t.TempDir(), "master.key"),
		AWS:             endpoints,
	}
	for _, a := range adjust {
		a(&cfg)
	}
	svc, err := New(context.Background(), cfg, Peers{Destinations: destinationv1.NewDestinationServiceClient(nil)})
	if err != nil {
		t.Fatal(err)
	}
	g := testenv.StartGRPC(t, func(srv *grpcserver.Server, peer *grpc.ClientConn) {
		svc.peers = Peers{Destinations: destinationv1.NewDestinationServiceClient(peer)}
		svc.Register(srv)
	})
	return &awsFixture{svc: svc, grpc: g, rec: rec,
		client: credentialv1.NewCredentialServiceClient(g.Conn), access: credentialv1.NewCredentialAccessServiceClient(g.Conn)}
}

// Role to role on moto, which enforces trust policies and the role's
// permissions once its setup window is closed.
func TestRoleToRoleOnMoto(t *testing.T) {
	m := testenv.SharedMoto(t)
	f := startAWS(t, m.PlatformARN, awsclient.Endpoints{
		Region: m.Region, STSURL: m.Endpoint, S3URL: m.Endpoint, S3PathStyle: true,
		PlatformCredentials: credentials.NewStaticCredentialsProvider(m.Platform.AccessKeyID, m.Platform.SecretAccessKey, ""),
	})
	ctx := context.Background()
	admin := f.grpc.As(t, "acme", auth.PolicyAdministrator)

	// The customer's side: a bucket, and a role whose trust policy will
	// name the External ID Sluice generates.
	role := testenv.NewCustomerRole(t, m, "acme-export", "placeholder-until-created", "")
	// moto 5.2.1 miscomputes SigV4 for a query holding an encoded slash
	// (ListObjectsV2 with prefix "exports/" answers SignatureDoesNotMatch,
	// which AWS and MinIO accept), so this prefix has none.
	c, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "moto-role",
		Credential: &credentialv1.Credential{Bucket: role.Bucket, Prefix: "exports-", Region: m.Region,
			Type: &credentialv1.Credential_RoleToRole{RoleToRole: &credentialv1.RoleToRole{TargetRoleArn: role.ARN}}}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	iamc := m.IAM(m.Admin)
	setTrust := func(doc string) {
		t.Helper()
		if _, err := iamc.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("acme-export"), PolicyDocument: aws.String(doc)}); err != nil {
			t.Fatal(err)
		}
	}
	// The customer pastes the trust policy Sluice answered.
	setTrust(c.GetRoleToRole().GetTrustPolicyJson())

	res, err := f.client.TestCredential(ctx, &credentialv1.TestCredentialRequest{Name: c.GetName()}, admin)
	if err != nil {
		t.Fatal(err)
	}
	if !res.GetOk() || connectiontest.Summary(res) != "assume_role=PASSED bucket_region=PASSED list=PASSED put_object=PASSED delete_object=PASSED" {
		t.Fatalf("test with the pasted trust policy: %s", connectiontest.Summary(res))
	}
	objs, err := m.S3(m.Admin).ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(role.Bucket)})
	if err != nil || len(objs.Contents) != 0 {
		t.Fatalf("the test left objects behind: %v, %v", objs.Contents, err)
	}
	// moto lets an AssumeRole without External ID through where AWS denies
	// it, so assert on the requests Sluice built: every one carries it.
	calls := f.rec.assumeRoleCalls()
	if len(calls) == 0 {
		t.Fatal("no AssumeRole request recorded")
	}
	for _, b := range calls {
		if !strings.Contains(b, "ExternalId="+c.GetRoleToRole().GetExternalId()) {
			t.Fatalf("an AssumeRole request without the External ID: %s", b)
		}
	}

	// Short-lived access for a service, cached until the credential changes.
	svcCtx := f.grpc.AsServiceFor(t, "acme")
	a1, err := f.access.MintAccess(svcCtx, &credentialv1.MintAccessRequest{Name: c.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if a1.GetSessionToken() == "" || a1.GetBucket() != role.Bucket || !a1.GetExpireTime().AsTime().After(f.svc.now()) {
		t.Fatalf("minted %v", a1)
	}
	a2, err := f.access.MintAccess(svcCtx, &credentialv1.MintAccessRequest{Name: c.GetName()})
	if err != nil || a2.GetAccessKeyId() != a1.GetAccessKeyId() {
		t.Fatalf("a second mint within the cache bound assumed the role again: %v", err)
	}
	if _, err := f.access.MintAccess(ctx, &credentialv1.MintAccessRequest{Name: c.GetName()}, admin); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("MintAccess with a user token: %v, want PermissionDenied", err)
	}
	if _, err := f.access.MintAccess(f.grpc.AsServiceFor(t, "globex"), &credentialv1.MintAccessRequest{Name: c.GetName()}); status.Code(err) != codes.NotFound {
		t.Fatalf("MintAccess on behalf of another tenant: %v, want NotFound", err)
	}

	// The customer changes the trust policy: access ends, and Test says why.
	setTrust(strings.ReplaceAll(c.GetRoleToRole().GetTrustPolicyJson(), c.GetRoleToRole().GetExternalId(), "someone-elses-id"))
	res, err = f.client.TestCredential(ctx, &credentialv1.TestCredentialRequest{Name: c.GetName()}, admin)
	if err != nil {
		t.Fatal(err)
	}
	if res.GetOk() || connectiontest.Summary(res) != "assume_role=FAILED(ROLE_NOT_ASSUMABLE) bucket_region=SKIPPED list=SKIPPED put_object=SKIPPED" {
		t.Fatalf("test after the trust policy changed: %s", connectiontest.Summary(res))
	}
	if msg := res.GetChecks()[0].GetMessage(); !strings.Contains(msg, "External ID") || strings.Contains(msg, "AccessDenied") {
		t.Fatalf("the failure is not in a user's words: %q", msg)
	}
	// A new External ID changes the etag, so minting does not reuse the
	// cached session: it asks STS and is refused.
	regen, err := f.client.RegenerateExternalId(ctx, &credentialv1.RegenerateExternalIdRequest{Name: c.GetName()}, admin)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.access.MintAccess(svcCtx, &credentialv1.MintAccessRequest{Name: c.GetName()})
	if status.Code(err) != codes.FailedPrecondition || apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_ROLE_NOT_ASSUMABLE {
		t.Fatalf("MintAccess with a stale trust policy: %v", err)
	}
	setTrust(regen.GetRoleToRole().GetTrustPolicyJson())

	// A role policy without s3:PutObject: Test names the missing permission.
	readOnly := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketLocation","s3:GetObject","s3:DeleteObject"],"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`, role.Bucket, role.Bucket)
	if _, err := iamc.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("acme-export"), PolicyName: aws.String("acme-export-s3"), PolicyDocument: aws.String(readOnly)}); err != nil {
		t.Fatal(err)
	}
	res, err = f.client.TestCredential(ctx, &credentialv1.TestCredentialRequest{Name: c.GetName()}, admin)
	if err != nil {
		t.Fatal(err)
	}
	if connectiontest.Summary(res) != "assume_role=PASSED bucket_region=PASSED list=PASSED put_object=FAILED(ACCESS_DENIED s3:PutObject)" {
		t.Fatalf("test without s3:PutObject: %s", connectiontest.Summary(res))
	}
}

// Access keys on MinIO: a user whose policy lacks s3:PutObject, then one
// that has it; a misspelled bucket; wrong keys.
func TestAccessKeysOnMinIO(t *testing.T) {
	spans := testenv.RecordSpans(t)
	m := testenv.SharedMinIO(t)
	// MinIO's STS serves AssumeRole for its users: access keys become
	// sessions there before any other service sees them.
	f := startAWS(t, "", awsclient.Endpoints{Region: m.Region, S3URL: m.Endpoint, S3PathStyle: true}, func(c *Config) {
		c.AccessKeySessions, c.AccessKeySTSURL = AssumeRole, m.Endpoint
	})
	ctx := context.Background()
	admin := f.grpc.As(t, "acme", auth.PolicyAdministrator)
	bucket := testenv.NewBucket(t, m)
	const keyID, keySecret = "SLUICETESTUSER0001", "sluice-test-user-secret-0001"
	policy := func(actions string) string {
		return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":[%s],"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`, actions, bucket, bucket)
	}
	if err := testenv.SetMinIOUser(ctx, m, keyID, keySecret, policy(`"s3:GetBucketLocation","s3:ListBucket","s3:GetObject","s3:DeleteObject"`)); err != nil {
		t.Fatal(err)
	}
	create := func(id, bucket, key, secret string) *credentialv1.Credential {
		t.Helper()
		c, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: id,
			Credential: &credentialv1.Credential{Bucket: bucket, Prefix: "exports/", Region: m.Region,
				Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: key, SecretAccessKey: secret}}}}, admin)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	test := func(c *credentialv1.Credential) string {
		t.Helper()
		res, err := f.client.TestCredential(ctx, &credentialv1.TestCredentialRequest{Name: c.GetName()}, admin)
		if err != nil {
			t.Fatal(err)
		}
		return connectiontest.Summary(res)
	}

	c := create("minio-keys", bucket, keyID, keySecret)
	if got := test(c); got != "get_session=PASSED bucket_region=PASSED list=PASSED put_object=FAILED(ACCESS_DENIED s3:PutObject)" {
		t.Fatalf("without s3:PutObject: %s", got)
	}
	if err := testenv.SetMinIOUser(ctx, m, keyID, keySecret, policy(`"s3:GetBucketLocation","s3:ListBucket","s3:GetObject","s3:PutObject","s3:DeleteObject"`)); err != nil {
		t.Fatal(err)
	}
	if got := test(c); got != "get_session=PASSED bucket_region=PASSED list=PASSED put_object=PASSED delete_object=PASSED" {
		t.Fatalf("with s3:PutObject: %s", got)
	}

	// MinIO, like AWS, checks permissions before existence: a user allowed
	// on every bucket learns that one does not exist.
	const broadID, broadSecret = "SLUICETESTUSER0002", "sluice-test-user-secret-0002"
	if err := testenv.SetMinIOUser(ctx, m, broadID, broadSecret, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}`); err != nil {
		t.Fatal(err)
	}
	missing := create("minio-missing", "no-such-bucket-"+strings.ToLower(randomSuffix()), broadID, broadSecret)
	if got := test(missing); got != "get_session=PASSED bucket_region=FAILED(BUCKET_NOT_FOUND) list=SKIPPED put_object=SKIPPED" {
		t.Fatalf("a bucket that does not exist: %s", got)
	}
	// The credential says another region than the bucket's.
	elsewhere, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "minio-region",
		Credential: &credentialv1.Credential{Bucket: bucket, Region: "eu-west-1",
			Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: broadID, SecretAccessKey: broadSecret}}}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	if got := test(elsewhere); got != "get_session=PASSED bucket_region=FAILED(REGION_MISMATCH) list=SKIPPED put_object=SKIPPED" {
		t.Fatalf("a credential in the wrong region: %s", got)
	}
	wrong := create("minio-wrong", bucket, broadID, "not-the-right-secret-at-all")
	if got := test(wrong); got != "get_session=FAILED(INVALID_CREDENTIALS) bucket_region=SKIPPED list=SKIPPED put_object=SKIPPED" {
		t.Fatalf("wrong secret: %s", got)
	}

	// Issue 9, item 6: services get a session derived from the keys,
	// never the customer's key pair, and the session writes as the user.
	a, err := f.access.MintAccess(f.grpc.AsServiceFor(t, "acme"), &credentialv1.MintAccessRequest{Name: c.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if a.GetAccessKeyId() == keyID || a.GetSecretAccessKey() == keySecret || a.GetSessionToken() == "" || a.GetRegion() != m.Region ||
		a.GetExpireTime().AsTime().After(time.Now().Add(sessionDuration+time.Minute)) {
		t.Fatalf("MintAccess for keys answered no session: key %s, session token %d bytes, expires %v",
			a.GetAccessKeyId(), len(a.GetSessionToken()), a.GetExpireTime().AsTime())
	}
	session := awsclient.Endpoints{Region: m.Region, S3URL: m.Endpoint, S3PathStyle: true}
	s3c := session.S3(session.Static(aws.Credentials{AccessKeyID: a.GetAccessKeyId(), SecretAccessKey: a.GetSecretAccessKey(), SessionToken: a.GetSessionToken()}), m.Region)
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("exports/by-session.txt"), Body: strings.NewReader("hi")}); err != nil {
		t.Fatalf("writing with the minted session: %v", err)
	}
	if _, err := f.access.MintAccess(f.grpc.AsServiceFor(t, "acme"), &credentialv1.MintAccessRequest{Name: wrong.GetName()}); status.Code(err) != codes.FailedPrecondition || apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_INVALID_CREDENTIALS {
		t.Fatalf("MintAccess for a wrong secret: %v", err)
	}
	// The run created, tested, rotated access and failed credentials:
	// no secret reached a log line or a span.
	traced := testenv.SpanText(spans.Ended())
	if !strings.Contains(traced, "TestCredential") {
		t.Fatal("no spans recorded")
	}
	for _, s := range []string{keySecret, broadSecret, "not-the-right-secret-at-all"} {
		if strings.Contains(f.grpc.Logs(), s) || strings.Contains(traced, s) {
			t.Fatalf("a secret reached the logs or a span")
		}
	}
}

// Issue 9, item 6, on AWS's terms: an IAM user's keys become a
// GetSessionToken session at STS (moto's); with pass-through, chosen by the
// operator for a store without STS, the keys go out as they are and the
// choice is logged at start.
func TestAccessKeySessionsOnMoto(t *testing.T) {
	m := testenv.SharedMoto(t)
	ctx := context.Background()
	keys, err := m.CreateUser(ctx, "customer-"+randomSuffix(), `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","sts:GetSessionToken"],"Resource":"*"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	ends := awsclient.Endpoints{Region: m.Region, STSURL: m.Endpoint, S3URL: m.Endpoint, S3PathStyle: true}
	mint := func(f *awsFixture) *credentialv1.TemporaryAccess {
		t.Helper()
		c, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "keys",
			Credential: &credentialv1.Credential{Bucket: "acme-exports", Region: m.Region,
				Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: keys.AccessKeyID, SecretAccessKey: keys.SecretAccessKey}}}},
			f.grpc.As(t, "acme", auth.PolicyAdministrator))
		if err != nil {
			t.Fatal(err)
		}
		a, err := f.access.MintAccess(f.grpc.AsServiceFor(t, "acme"), &credentialv1.MintAccessRequest{Name: c.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	// moto answers GetSessionToken with a canned session (its key is not
	// ASIA...), so what is checked is that the user's own pair never leaves.
	a := mint(startAWS(t, "", ends))
	if a.GetAccessKeyId() == keys.AccessKeyID || a.GetSecretAccessKey() == keys.SecretAccessKey || a.GetSessionToken() == "" {
		t.Fatalf("session-token: MintAccess answered key %s with a %d-byte session token, not a session", a.GetAccessKeyId(), len(a.GetSessionToken()))
	}

	var logs bytes.Buffer
	a = mint(startAWS(t, "", ends, func(c *Config) {
		c.AccessKeySessions = PassThrough
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}))
	if a.GetAccessKeyId() != keys.AccessKeyID || a.GetSessionToken() != "" {
		t.Fatalf("pass-through: MintAccess answered key %s", a.GetAccessKeyId())
	}
	if !strings.Contains(logs.String(), "pass-through") {
		t.Fatalf("pass-through was not logged at start: %q", logs.String())
	}
}

// A hung STS (every answer dropped) answers MintAccess and TestCredential
// within --aws-timeout, never holding its caller (#22: AssumeRole waited
// 13 minutes in persistConn.roundTrip). Once STS answers again, so do
// they.
func TestHungSTSIsBounded(t *testing.T) {
	m := testenv.SharedMoto(t)
	network := testenv.NewNetwork(t, m.Endpoint)
	f := startAWS(t, m.PlatformARN, awsclient.Endpoints{
		Region: m.Region, STSURL: network.Endpoint, S3URL: m.Endpoint, S3PathStyle: true,
		PlatformCredentials: credentials.NewStaticCredentialsProvider(m.Platform.AccessKeyID, m.Platform.SecretAccessKey, ""),
	}, func(c *Config) {
		c.AWS.HTTPClient = nil // the real clients, with their timeouts
		c.AWS.Timeout = 2 * time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // far past the bound: a hang fails here
	defer cancel()
	admin := f.grpc.As(t, "acme", auth.PolicyAdministrator)
	role := testenv.NewCustomerRole(t, m, "hung-sts-"+randomSuffix(), "placeholder", "")
	c, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "hung",
		Credential: &credentialv1.Credential{Bucket: role.Bucket, Region: m.Region,
			Type: &credentialv1.Credential_RoleToRole{RoleToRole: &credentialv1.RoleToRole{TargetRoleArn: role.ARN}}}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	toxic, err := network.Add(testenv.Blackhole, "downstream", `{"timeout":0}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.access.MintAccess(f.grpc.AsServiceFor(t, "acme"), &credentialv1.MintAccessRequest{Name: c.GetName()}); err == nil || ctx.Err() != nil {
		t.Fatalf("MintAccess with STS hung: %v, want an error before the test's deadline", err)
	} else if code := status.Code(err); code == codes.Internal || code == codes.Unknown {
		t.Errorf("MintAccess with STS hung answered %v: %v", code, err)
	}
	res, err := f.client.TestCredential(ctx, &credentialv1.TestCredentialRequest{Name: c.GetName()}, admin)
	if err != nil || res.GetOk() || ctx.Err() != nil {
		t.Fatalf("TestCredential with STS hung: %v, %v; want a failed check", connectiontest.Summary(res), err)
	}
	network.Remove(toxic)
	// STS answers again (the role's trust is not set up: a clear refusal,
	// not a hang).
	_, err = f.access.MintAccess(f.grpc.AsServiceFor(t, "acme"), &credentialv1.MintAccessRequest{Name: c.GetName()})
	if e := apierror.FromStatus(err); err != nil && e.Reason == errorsv1.ErrorReason_ERROR_REASON_TRANSIENT {
		t.Errorf("MintAccess once STS answers: still %v", err)
	}
}
