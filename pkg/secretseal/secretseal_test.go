package secretseal_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/sluicehq/sluice/pkg/secretseal"
	"github.com/sluicehq/sluice/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	nameA = "tenants/acme/environments/production/credentials/a"
	nameB = "tenants/acme/environments/production/credentials/b"
)

// contract is what every master key must give: round trips, secrets bound
// to their resource, tampering detected.
func contract(t *testing.T, s *secretseal.Sealer) {
	ctx := context.Background()
	secret := []byte("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
	sealed, err := s.Seal(ctx, secret, nameA)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("the sealed record contains the secret")
	}
	again, err := s.Seal(ctx, secret, nameA)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sealed, again) {
		t.Fatal("two seals of one secret are identical: data keys or nonces repeat")
	}
	got, err := s.Open(ctx, sealed, nameA)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open(ctx, sealed, nameB); !errors.Is(err, secretseal.ErrCannotOpen) {
		t.Fatalf("opened for another resource: %v", err)
	}
	for _, i := range []int{0, len(sealed) / 2, len(sealed) - 1} {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, err := s.Open(ctx, bad, nameA); !errors.Is(err, secretseal.ErrCannotOpen) {
			t.Fatalf("a record with byte %d flipped opened: %v", i, err)
		}
	}
	if _, err := s.Open(ctx, sealed[:10], nameA); !errors.Is(err, secretseal.ErrCannotOpen) {
		t.Fatalf("a truncated record opened: %v", err)
	}
}

func TestLocalKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "master.key")
	key, err := secretseal.LoadOrCreateLocalKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key file: %v, %v", fi.Mode(), err)
	}
	contract(t, secretseal.New(key))

	ctx := context.Background()
	sealed, err := secretseal.New(key).Seal(ctx, []byte("secret"), nameA)
	if err != nil {
		t.Fatal(err)
	}
	reloaded, err := secretseal.LoadOrCreateLocalKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := secretseal.New(reloaded).Open(ctx, sealed, nameA); err != nil || string(got) != "secret" {
		t.Fatalf("after reloading the key file: %q, %v", got, err)
	}
	other, err := secretseal.LoadOrCreateLocalKey(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := secretseal.New(other).Open(ctx, sealed, nameA); !errors.Is(err, secretseal.ErrCannotOpen) {
		t.Fatalf("opened with another master key: %v", err)
	}
}

// KMS wrapping against moto's KMS, which binds the encryption context.
func TestKMSKey(t *testing.T) {
	m := testenv.SharedMoto(t)
	client := kms.New(kms.Options{
		Region: m.Region, BaseEndpoint: aws.String(m.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(m.Admin.AccessKeyID, m.Admin.SecretAccessKey, ""),
	})
	key, err := client.CreateKey(context.Background(), &kms.CreateKeyInput{Description: aws.String("sluice master key")})
	if err != nil {
		t.Fatalf("create KMS key: %v", err)
	}
	contract(t, secretseal.New(secretseal.NewKMSKey(client, *key.KeyMetadata.KeyId)))

	// A record sealed under the local key does not open under KMS.
	local, err := secretseal.LoadOrCreateLocalKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := secretseal.New(local).Seal(context.Background(), []byte("x"), nameA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := secretseal.New(secretseal.NewKMSKey(client, *key.KeyMetadata.KeyId)).Open(context.Background(), sealed, nameA); !errors.Is(err, secretseal.ErrCannotOpen) {
		t.Fatalf("a local record opened under KMS: %v", err)
	}
}
