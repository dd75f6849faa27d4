package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/pkg/auth"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newSigner(t *testing.T) *auth.Signer { return auth.NewSigner(newKey(t)) }

func TestVerify(t *testing.T) {
	key := newKey(t)
	signer, other := auth.NewSigner(key), newSigner(t)
	v := auth.NewVerifier(signer.PublicKey())
	good, err := signer.Mint("alice@acme.test", "acme", []string{auth.PolicyOperator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Expired beyond the verifier's clock-skew leeway.
	expiredTok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"sub": "alice@acme.test", "tenant": "acme", "iss": auth.Issuer, "aud": auth.Audience,
		"exp": time.Now().Add(-time.Hour).Unix(),
	})
	expiredTok.Header["kid"] = auth.KeyID(signer.PublicKey())
	expired, err := expiredTok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := other.Mint("alice@acme.test", "acme", nil, time.Hour)
	noTenant, _ := signer.Mint("alice@acme.test", "", nil, time.Hour)
	hmac, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "mallory", "tenant": "acme", "iss": auth.Issuer, "aud": auth.Audience, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(signer.PublicKey())) // the classic key-confusion attack

	claims, err := v.Verify(good)
	if err != nil {
		t.Fatalf("Verify(good): %v", err)
	}
	if claims.Subject != "alice@acme.test" || claims.Tenant != "acme" || !claims.Has(auth.PolicyOperator) {
		t.Fatalf("claims = %+v", claims)
	}
	for name, tok := range map[string]string{
		"expired": expired, "signed by an untrusted key": foreign, "without tenant": noTenant,
		"HS256 with the public key": hmac, "garbage": "not.a.jwt",
	} {
		if _, err := v.Verify(tok); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("Verify(%s) = %v, want ErrInvalidToken", name, err)
		}
	}
}

func incoming(headers ...string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(headers...))
}

func TestAuthenticate(t *testing.T) {
	signer := newSigner(t)
	v := auth.NewVerifier(signer.PublicKey())
	user, _ := signer.Mint("alice@acme.test", "acme", []string{auth.PolicyRestrictPII}, time.Hour)
	svcTok, err := auth.NewServiceTokens(signer, "sluice-delivery").Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("no token is Unauthenticated", func(t *testing.T) {
		_, err := v.Authenticate(incoming())
		if status.Code(statusOf(err)) != codes.Unauthenticated {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("not a bearer header is Unauthenticated", func(t *testing.T) {
		_, err := v.Authenticate(incoming(auth.AuthorizationHeader, "Basic abc"))
		if status.Code(statusOf(err)) != codes.Unauthenticated {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a user calls directly", func(t *testing.T) {
		c, err := v.Authenticate(incoming(auth.AuthorizationHeader, "Bearer "+user))
		if err != nil {
			t.Fatal(err)
		}
		if c.IsService() || c.Tenant != "acme" || !c.Has(auth.PolicyRestrictPII) {
			t.Fatalf("caller = %+v", c)
		}
		if _, err := auth.RequireService(auth.WithCaller(context.Background(), c)); status.Code(statusOf(err)) != codes.PermissionDenied {
			t.Fatalf("RequireService for a user: got %v, want PermissionDenied", err)
		}
	})
	t.Run("a service calls for a user: the user's rights decide", func(t *testing.T) {
		c, err := v.Authenticate(incoming(auth.AuthorizationHeader, "Bearer "+svcTok, auth.CallerHeader, "Bearer "+user))
		if err != nil {
			t.Fatal(err)
		}
		if !c.IsService() || c.Subject != "alice@acme.test" || c.Tenant != "acme" || c.Has(auth.PolicyService) {
			t.Fatalf("caller = %+v", c)
		}
		if !c.CanSeeTenant("acme") || c.CanSeeTenant("globex") {
			t.Fatal("a service acting for acme's user must see acme only")
		}
	})
	t.Run("a user cannot pose as a service's end caller", func(t *testing.T) {
		c, err := v.Authenticate(incoming(auth.AuthorizationHeader, "Bearer "+user, auth.CallerHeader, "Bearer "+user))
		if err != nil {
			t.Fatal(err)
		}
		if c.IsService() {
			t.Fatal("a user's token with a caller header was taken for a service")
		}
	})
	t.Run("a service token cannot be the end caller", func(t *testing.T) {
		_, err := v.Authenticate(incoming(auth.AuthorizationHeader, "Bearer "+svcTok, auth.CallerHeader, "Bearer "+svcTok))
		if status.Code(statusOf(err)) != codes.Unauthenticated {
			t.Fatalf("got %v, want Unauthenticated", err)
		}
	})
}

func statusOf(err error) error {
	if err == nil {
		return nil
	}
	return status.Convert(err).Err()
}

func TestSigningKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "signing.pem")
	k1, err := auth.LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := auth.LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("a second load made a new key")
	}
	keys, err := auth.LoadPublicKeys(path)
	if err != nil || len(keys) != 1 || !keys[0].Equal(k1.Public()) {
		t.Fatalf("LoadPublicKeys(private key file) = %v, %v", keys, err)
	}
	pubPath := filepath.Join(t.TempDir(), "pub.pem")
	pem, err := auth.EncodePublicKey(k1.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	if keys, err := auth.LoadPublicKeys(pubPath); err != nil || !keys[0].Equal(k1.Public()) {
		t.Fatalf("LoadPublicKeys(public key file) = %v, %v", keys, err)
	}
}

// BenchmarkVerify is the cost every authenticated RPC pays.
func BenchmarkVerify(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer := auth.NewSigner(key)
	v := auth.NewVerifier(signer.PublicKey())
	tok, err := signer.Mint("alice@acme.test", "acme", []string{auth.PolicyOperator}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
