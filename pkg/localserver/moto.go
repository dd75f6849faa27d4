package localserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Moto is a running moto server that enforces IAM: after the harness's own
// setup, every request must be signed by a known key and is checked against
// IAM policies, and AssumeRole against the role's trust policy, including
// its sts:ExternalId condition.
type Moto struct {
	// Endpoint serves STS, IAM, S3 and KMS: `http://127.0.0.1:{port}`.
	Endpoint string
	// Region of every client.
	Region string
	// AccountID is moto's default account.
	AccountID string

	// Admin may do anything in the account; tests use it to shape IAM.
	Admin aws.Credentials
	// Platform is Sluice's platform identity: a user allowed sts:AssumeRole.
	Platform aws.Credentials
	// PlatformARN is the platform user's ARN, the trust policy's principal.
	PlatformARN string

	proc *process
	dir  string
}

// StartMoto starts moto_server on a random port with
// INITIAL_NO_AUTH_ACTION_COUNT set, creates an administrator and the platform
// user while requests still run unauthenticated, then closes that window so
// that everything after is authenticated and authorized.
func StartMoto() (*Moto, error) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, fmt.Errorf("moto_server not found on PATH: install it with `pip install 'moto[server]==5.2.1'`")
	}
	dir, err := os.MkdirTemp("", "sluice-moto-")
	if err != nil {
		return nil, fmt.Errorf("moto: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &Moto{Endpoint: "http://" + hostPort(port), Region: "us-east-1", AccountID: "123456789012", dir: dir}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	// A generous window for setup; Authorize closes it exactly afterwards.
	cmd.Env = append(os.Environ(), "INITIAL_NO_AUTH_ACTION_COUNT=1000", "MOTO_ALLOW_NONEXISTENT_REGION=false")
	m.proc, err = startProcess("moto", cmd, filepath.Join(dir, "moto.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	err = m.proc.waitReady(60*time.Second, httpOK(m.Endpoint+"/moto-api/data.json"))
	if err == nil {
		err = m.setup(context.Background())
	}
	if err != nil {
		m.Stop()
		return nil, err
	}
	announce("moto ready at %s, IAM and STS trust policies enforced", m.Endpoint)
	return m, nil
}

func (m *Moto) setup(ctx context.Context) error {
	bootstrap := aws.Credentials{AccessKeyID: "bootstrap", SecretAccessKey: "bootstrap"}
	client := m.IAM(bootstrap)
	admin, err := m.createUser(ctx, client, "sluice-test-admin", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)
	if err != nil {
		return err
	}
	platform, err := m.createUser(ctx, client, "sluice-platform",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}`)
	if err != nil {
		return err
	}
	m.Admin, m.Platform = admin, platform
	m.PlatformARN = fmt.Sprintf("arn:aws:iam::%s:user/sluice-platform", m.AccountID)
	// Close the unauthenticated window: from the next request on, moto
	// authenticates and authorizes everything.
	resp, err := http.Post(m.Endpoint+"/moto-api/reset-auth", "text/plain", strings.NewReader("0"))
	if err != nil {
		return fmt.Errorf("moto: enforce auth: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("moto: enforce auth: %s", resp.Status)
	}
	return nil
}

func (m *Moto) createUser(ctx context.Context, client *iam.Client, name, policy string) (aws.Credentials, error) {
	if _, err := client.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
		return aws.Credentials{}, fmt.Errorf("moto: create user %s: %w", name, err)
	}
	if _, err := client.PutUserPolicy(ctx, &iam.PutUserPolicyInput{
		UserName: aws.String(name), PolicyName: aws.String(name + "-policy"), PolicyDocument: aws.String(policy),
	}); err != nil {
		return aws.Credentials{}, fmt.Errorf("moto: policy for %s: %w", name, err)
	}
	key, err := client.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("moto: access key for %s: %w", name, err)
	}
	return aws.Credentials{AccessKeyID: *key.AccessKey.AccessKeyId, SecretAccessKey: *key.AccessKey.SecretAccessKey}, nil
}

// CreateUser creates, as the administrator, an IAM user with an inline
// policy and answers its access key.
func (m *Moto) CreateUser(ctx context.Context, name, policy string) (aws.Credentials, error) {
	return m.createUser(ctx, m.IAM(m.Admin), name, policy)
}

// Stop stops moto by its process id.
func (m *Moto) Stop() {
	m.proc.stop(syscall.SIGTERM, 5*time.Second)
	os.RemoveAll(m.dir)
}

func staticCreds(c aws.Credentials) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
}

// IAM answers an IAM client signed with c.
func (m *Moto) IAM(c aws.Credentials) *iam.Client {
	return iam.New(iam.Options{Region: m.Region, BaseEndpoint: aws.String(m.Endpoint), Credentials: staticCreds(c)})
}

// STS answers an STS client signed with c.
func (m *Moto) STS(c aws.Credentials) *sts.Client {
	return sts.New(sts.Options{Region: m.Region, BaseEndpoint: aws.String(m.Endpoint), Credentials: staticCreds(c)})
}

// S3 answers a path-style S3 client signed with c.
func (m *Moto) S3(c aws.Credentials) *s3.Client {
	return s3.New(s3.Options{Region: m.Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true, Credentials: staticCreds(c)})
}

// CustomerRole is a role in the "customer's" account that trusts the
// platform user on condition of an External ID.
type CustomerRole struct {
	ARN        string
	ExternalID string
	Bucket     string
}

// CreateCustomerRole creates, as the administrator, a bucket and a role whose
// trust policy admits the platform user only with externalID and whose
// permissions policy is permissions (the whole bucket when empty).
func (m *Moto) CreateCustomerRole(ctx context.Context, name, externalID, permissions string) (CustomerRole, error) {
	bucket := "customer-" + randomHex(6)
	if _, err := m.S3(m.Admin).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return CustomerRole{}, fmt.Errorf("moto: bucket: %w", err)
	}
	trust, _ := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{map[string]any{
			"Effect":    "Allow",
			"Principal": map[string]any{"AWS": m.PlatformARN},
			"Action":    "sts:AssumeRole",
			"Condition": map[string]any{"StringEquals": map[string]any{"sts:ExternalId": externalID}},
		}},
	})
	client := m.IAM(m.Admin)
	role, err := client.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(string(trust))})
	if err != nil {
		return CustomerRole{}, fmt.Errorf("moto: role %s: %w", name, err)
	}
	if permissions == "" {
		permissions = fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`, bucket, bucket)
	}
	if _, err := client.PutRolePolicy(ctx, &iam.PutRolePolicyInput{
		RoleName: aws.String(name), PolicyName: aws.String(name + "-s3"), PolicyDocument: aws.String(permissions),
	}); err != nil {
		return CustomerRole{}, fmt.Errorf("moto: role policy %s: %w", name, err)
	}
	return CustomerRole{ARN: *role.Role.Arn, ExternalID: externalID, Bucket: bucket}, nil
}
