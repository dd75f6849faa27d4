package store_test

import (
	"context"
	"errors"
	"testing"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/resourcestore/resourcestoretest"
	"github.com/sluicehq/sluice/pkg/testenv"
	"github.com/sluicehq/sluice/services/credential/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func open(t *testing.T, dsn string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			resourcestoretest.Run(t, resourcestoretest.Fixture[*credentialv1.Credential]{
				Open: func(t *testing.T) *resourcestore.Table[*credentialv1.Credential] {
					return open(t, b.DSN(t)).Credentials
				},
				New: func(name string) *credentialv1.Credential {
					return &credentialv1.Credential{
						Name: name, DisplayName: "Exports", Bucket: "acme-exports", Region: "us-east-1",
						Type: &credentialv1.Credential_RoleToRole{RoleToRole: &credentialv1.RoleToRole{
							TargetRoleArn: "arn:aws:iam::123456789012:role/sluice-export",
						}},
					}
				},
				Change: func(c *credentialv1.Credential) { c.Description += " changed" },
			})
		})
	}
}

// Opening an already migrated database applies nothing twice.
func TestReopenKeepsData(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			dsn := b.DSN(t)
			s := open(t, dsn)
			name := "tenants/a/environments/production/credentials/c"
			if _, err := s.Credentials.Create(context.Background(), "tenants/a/environments/production",
				&credentialv1.Credential{Name: name, Bucket: "b"}); err != nil {
				t.Fatal(err)
			}
			again := open(t, dsn)
			if _, err := again.Credentials.Get(context.Background(), name); err != nil {
				t.Fatalf("after reopening: %v", err)
			}
		})
	}
}

// BenchmarkCredentials measures the per-request store cost of the calls
// every handler makes: one Get, and one read-modify-write Update.
func BenchmarkCredentials(b *testing.B) {
	ctx := context.Background()
	const parent = "tenants/a/environments/production"
	for _, be := range testenv.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			s, err := store.Open(ctx, be.DSN(b))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			name := parent + "/credentials/bench"
			if _, err := s.Credentials.Create(ctx, parent, &credentialv1.Credential{Name: name, Bucket: "b"}); err != nil {
				b.Fatal(err)
			}
			b.Run("Get", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Credentials.Get(ctx, name); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Update", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Credentials.Update(ctx, name, "", func(c *credentialv1.Credential) error {
						c.Description = "x"
						return nil
					}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// Secrets are written and removed with their credential, atomically.
func TestSecrets(t *testing.T) {
	ctx := context.Background()
	const parent = "tenants/a/environments/production"
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			s := open(t, b.DSN(t))
			name := parent + "/credentials/keys"
			if _, err := s.Credentials.Create(ctx, parent, &credentialv1.Credential{Name: name, Bucket: "b"}, s.PutSecret(name, []byte("sealed-1"))); err != nil {
				t.Fatal(err)
			}
			got, err := s.Secret(ctx, name)
			if err != nil || string(got) != "sealed-1" {
				t.Fatalf("Secret = %q, %v", got, err)
			}
			if _, err := s.Credentials.Update(ctx, name, "", func(*credentialv1.Credential) error { return nil }, s.PutSecret(name, []byte("sealed-2"))); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.Secret(ctx, name); string(got) != "sealed-2" {
				t.Fatalf("after rotation Secret = %q", got)
			}
			if err := s.Credentials.Delete(ctx, name, "", s.DeleteSecret(name)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Secret(ctx, name); !errors.Is(err, apierror.ErrNotFound) {
				t.Fatalf("secret outlived its credential: %v", err)
			}
		})
	}
}
