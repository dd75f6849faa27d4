package localserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
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
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/sluicehq/sluice/pkg/awsclient"
	"github.com/sluicehq/sluice/pkg/mtls"
)

// MinIO is a running MinIO server.
type MinIO struct {
	// Endpoint is the S3 endpoint, `http://127.0.0.1:{port}` (https with
	// MinIOOptions.TLS).
	Endpoint string
	// CAFile is the PEM file of the CA that signed MinIO's certificate,
	// with MinIOOptions.TLS; empty otherwise.
	CAFile string
	// RootUser and RootPassword are the administrator's access key pair.
	RootUser, RootPassword string
	// Region is the region MinIO reports.
	Region string

	proc *process
	dir  string
	http *http.Client // trusts CAFile
}

// MinIOOptions change how MinIO starts.
type MinIOOptions struct {
	// KMSKeyName, when set, gives MinIO a built-in KMS with one key of this
	// name, so that SSE-S3 and SSE-KMS work (without it MinIO answers
	// NotImplemented to any server-side encryption).
	KMSKeyName string
	// TLS serves HTTPS only, with a certificate for 127.0.0.1 from a fresh
	// CA (CAFile), as S3 itself is served.
	TLS bool
}

// StartMinIO starts MinIO on a random port with a fresh data directory.
func StartMinIO() (*MinIO, error) { return StartMinIOWith(MinIOOptions{}) }

// StartMinIOWith starts MinIO with options.
func StartMinIOWith(o MinIOOptions) (*MinIO, error) {
	bin, err := tool("minio")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sluice-minio-")
	if err != nil {
		return nil, fmt.Errorf("minio: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	consolePort, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &MinIO{
		Endpoint:     "http://" + hostPort(port),
		RootUser:     "SLUICEROOT" + strings.ToUpper(randomHex(5)), // shaped like an IAM access key id
		RootPassword: randomHex(16),
		Region:       "us-east-1",
		dir:          dir,
		http:         &http.Client{Transport: pooled()},
	}
	args := []string{"server", filepath.Join(dir, "data"),
		"--address", hostPort(port), "--console-address", hostPort(consolePort), "--quiet"}
	if o.TLS {
		certs, err := m.makeCerts()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		args = append(args, "--certs-dir", certs)
		m.Endpoint = "https://" + hostPort(port)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.RootUser,
		"MINIO_ROOT_PASSWORD="+m.RootPassword,
		"MINIO_REGION="+m.Region,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	if o.KMSKeyName != "" {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		cmd.Env = append(cmd.Env, "MINIO_KMS_SECRET_KEY="+o.KMSKeyName+":"+base64.StdEncoding.EncodeToString(key))
	}
	m.proc, err = startProcess("MinIO", cmd, filepath.Join(dir, "minio.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	err = m.proc.waitReady(60*time.Second, httpOKWith(m.http, m.Endpoint+"/minio/health/ready"))
	if err == nil {
		// The health endpoint answers before the IAM subsystem has loaded;
		// until it has, requests fail with 503 XMinioIAMNotInitialized.
		// Ready means an unknown key is refused as unknown.
		err = m.proc.waitReady(60*time.Second, m.iamReady)
	}
	if err != nil {
		m.Stop()
		return nil, err
	}
	announce("MinIO ready at %s", m.Endpoint)
	return m, nil
}

func (m *MinIO) iamReady(ctx context.Context) error {
	client := s3.New(s3.Options{
		Region: m.Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true,
		Credentials:      credentials.NewStaticCredentialsProvider("readiness-probe", "readiness-probe-secret", ""),
		RetryMaxAttempts: 1,
		HTTPClient:       m.http,
	})
	_, err := client.ListBuckets(ctx, &s3.ListBucketsInput{})
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "InvalidAccessKeyId" {
		return nil
	}
	return fmt.Errorf("IAM not ready: %v", err)
}

// Outage stops the server by its process id (SIGTERM) for down, keeping
// its data, then starts it again on the same address and waits until it
// serves: an S3 outage, as a network partition or a restart makes one.
func (m *MinIO) Outage(down time.Duration) error {
	m.proc.stop(syscall.SIGTERM, 10*time.Second)
	time.Sleep(down)
	old := m.proc.cmd
	cmd := exec.Command(old.Path, old.Args[1:]...)
	cmd.Env = old.Env
	var err error
	if m.proc, err = startProcess("MinIO", cmd, filepath.Join(m.dir, "minio.log")); err != nil {
		return err
	}
	if err := m.proc.waitReady(60*time.Second, httpOKWith(m.http, m.Endpoint+"/minio/health/ready")); err != nil {
		return err
	}
	return m.proc.waitReady(60*time.Second, m.iamReady)
}

// Stop stops the server by its process id and removes its data.
func (m *MinIO) Stop() {
	m.proc.stop(syscall.SIGTERM, 10*time.Second)
	os.RemoveAll(m.dir)
}

// S3 answers an S3 client for MinIO with the given keys (the root user's
// when empty), path-style as MinIO serves it.
func (m *MinIO) S3(accessKey, secretKey string) *s3.Client {
	if accessKey == "" {
		accessKey, secretKey = m.RootUser, m.RootPassword
	}
	return s3.New(s3.Options{
		Region:       m.Region,
		BaseEndpoint: aws.String(m.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		HTTPClient:   m.http,
	})
}

// CreateBucket creates a bucket with a unique name starting with prefix and
// answers the name.
func (m *MinIO) CreateBucket(ctx context.Context, prefix string) (string, error) {
	name := prefix + randomHex(8)
	if _, err := m.S3("", "").CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return "", fmt.Errorf("minio: create bucket %s: %w", name, err)
	}
	return name, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// HTTPClient answers an HTTP client for MinIO, trusting its CA when it
// serves HTTPS.
func (m *MinIO) HTTPClient() *http.Client { return m.http }

// Pid answers the server's process id.
func (m *MinIO) Pid() int { return m.proc.cmd.Process.Pid }

// makeCerts writes a CA (CAFile) and a certificate for 127.0.0.1 signed by
// it in the layout MinIO's --certs-dir wants, and answers that directory.
func (m *MinIO) makeCerts() (string, error) {
	made := filepath.Join(m.dir, "tls")
	if err := mtls.MakeDevelopment(made, []string{"minio"}, 7*24*time.Hour); err != nil {
		return "", fmt.Errorf("minio: TLS certificate: %w", err)
	}
	certs := filepath.Join(m.dir, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return "", fmt.Errorf("minio: %w", err)
	}
	for from, to := range map[string]string{"minio.pem": "public.crt", "minio-key.pem": "private.key"} {
		if err := os.Rename(filepath.Join(made, from), filepath.Join(certs, to)); err != nil {
			return "", fmt.Errorf("minio: %w", err)
		}
	}
	m.CAFile = filepath.Join(made, "ca.pem")
	ca, err := os.ReadFile(m.CAFile)
	if err != nil {
		return "", fmt.Errorf("minio: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	tr := pooled()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	m.http = &http.Client{Transport: tr}
	return certs, nil
}

// pooled answers a transport that keeps as many idle connections to
// MinIO as the services do to an S3 endpoint: Go's default keeps 2, and
// a load test's requests by hand would then pay a new connection (over
// HTTPS, a handshake) for most of theirs.
func pooled() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost, tr.MaxIdleConns = awsclient.S3IdleConnsPerHost, 4*awsclient.S3IdleConnsPerHost
	return tr
}
