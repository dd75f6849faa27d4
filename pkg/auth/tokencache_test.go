package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func cacheFixture(t testing.TB) (*Verifier, *Signer, *Signer) {
	t.Helper()
	key := func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	users, services := NewSigner(key()), NewSigner(key())
	v, err := NewVerifier(VerifierConfig{UserKeys: []ed25519.PublicKey{users.PublicKey()}, ServiceKeys: []ed25519.PublicKey{services.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	return v, users, services
}

// A token that verified is answered again from memory, as a copy the
// caller cannot change for the next; its kind stays (a remembered service
// token is still no user's); a token that failed is never remembered, and
// a changed byte makes another token.
func TestVerifiedTokensAreRemembered(t *testing.T) {
	v, users, services := cacheFixture(t)
	good, err := users.Mint("alice@acme.test", "acme", []string{PolicyOperator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first, _, err := v.Verify(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.verified.entries) != 1 {
		t.Fatalf("%d tokens remembered after one verified", len(v.verified.entries))
	}
	first.Policies[0], first.Tenant, first.ExpiresAt.Time = PolicyService, "globex", time.Now().Add(100*time.Hour)
	again, kind, err := v.Verify(good)
	if err != nil || kind != UserToken || again.Tenant != "acme" || again.Policies[0] != PolicyOperator || again.ExpiresAt.After(time.Now().Add(2*time.Hour)) {
		t.Fatalf("the remembered token answers %+v, %v, %v: a caller's change leaked into it", again, kind, err)
	}

	svc, _ := services.MintService("sluice-delivery", 15*time.Minute)
	if _, _, err := v.Verify(svc); err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyUser(svc); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a remembered service token passed as a user's: %v", err)
	}

	tampered := good[:len(good)-2] + string("AB"[len(good)%2]) + "A"
	if tampered == good {
		tampered = good[:len(good)-1] + "B"
	}
	for range 2 {
		if _, _, err := v.Verify(tampered); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("a tampered token verified: %v", err)
		}
	}
	if len(v.verified.entries) != 2 {
		t.Fatalf("%d tokens remembered, want the two that verified", len(v.verified.entries))
	}
}

// A remembered token is trusted until it expires (with the parser's
// leeway) and for at most verifiedFor; at most maxVerified are kept.
func TestVerifiedTokensExpire(t *testing.T) {
	now := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	var v verified
	soon := &Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "a", ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Second))}}
	later := &Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "b", ExpiresAt: jwt.NewNumericDate(now.Add(2 * time.Hour))}}
	v.put("soon", soon, UserToken, now)
	v.put("later", later, ServiceToken, now)
	for _, c := range []struct {
		token string
		at    time.Duration
		hit   bool
	}{
		{"soon", 39 * time.Second, true}, {"soon", 41 * time.Second, false},
		{"later", 59 * time.Second, true}, {"later", 61 * time.Second, false},
		{"never", 0, false},
	} {
		if _, _, ok := v.get(c.token, now.Add(c.at)); ok != c.hit {
			t.Errorf("%s at +%s: remembered %v, want %v", c.token, c.at, ok, c.hit)
		}
	}
	for i := range maxVerified + 10 {
		v.put(fmt.Sprint(i), later, UserToken, now)
	}
	if n := len(v.entries); n > maxVerified {
		t.Fatalf("%d tokens remembered, at most %d", n, maxVerified)
	}
}

// BenchmarkVerify is the cost every authenticated RPC pays: a token's
// first verification, and a remembered one's.
func BenchmarkVerify(b *testing.B) {
	v, _, services := cacheFixture(b)
	tok, err := services.MintService("sluice-delivery", 15*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			clear(v.verified.entries)
			if _, _, err := v.VerifyContext(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("remembered", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := v.VerifyContext(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
