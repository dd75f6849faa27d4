package awsclient_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluicehq/sluice/pkg/awsclient"
	"github.com/sluicehq/sluice/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// An S3-compatible store behind a private CA is reached once its CA is
// given (--aws-ca-bundle or AWS_CA_BUNDLE), and refused as unknown without
// it; a bundle that cannot be used is refused at start, not at the first
// delivery.
func TestCABundleTrustsAPrivateCA(t *testing.T) {
	m := testenv.NewMinIOWithTLS(t)
	bucket := testenv.NewBucket(t, m)
	put := func(ep awsclient.Endpoints) error {
		client := ep.S3(ep.Static(aws.Credentials{AccessKeyID: m.RootUser, SecretAccessKey: m.RootPassword}), "", func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		_, err := client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k"), Body: strings.NewReader("v")})
		return err
	}
	base := awsclient.Endpoints{S3URL: m.Endpoint, S3PathStyle: true, Region: m.Region}

	t.Setenv("AWS_CA_BUNDLE", "")
	if err := put(base); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: %v, want a certificate error", err)
	}
	withFlag := base
	withFlag.CABundle = m.CAFile
	if err := withFlag.Check(); err != nil {
		t.Fatal(err)
	}
	if err := put(withFlag); err != nil {
		t.Fatalf("with --aws-ca-bundle: %v", err)
	}
	t.Setenv("AWS_CA_BUNDLE", m.CAFile)
	if err := put(base); err != nil {
		t.Fatalf("with AWS_CA_BUNDLE: %v", err)
	}

	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{notPEM, filepath.Join(t.TempDir(), "missing.pem")} {
		ep := base
		ep.CABundle = bad
		if err := ep.Check(); err == nil || !strings.Contains(err.Error(), "CA bundle") {
			t.Fatalf("bundle %s: Check answered %v", bad, err)
		}
		if err := put(ep); err == nil || !strings.Contains(err.Error(), "CA bundle") {
			t.Fatalf("bundle %s: a request answered %v, want the bundle's error", bad, err)
		}
	}
}
