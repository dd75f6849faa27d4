package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/pkg/auth"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newSigner(t testing.TB) *auth.Signer { return auth.NewSigner(newKey(t)) }

// trust answers a user signer, a service signer and a verifier trusting
// each for its own kind of token.
func trust(t testing.TB) (users, services *auth.Signer, v *auth.Verifier) {
	t.Helper()
	users, services = auth.NewSigner(newKey(t)), auth.NewSigner(newKey(t))
	v, err := auth.NewVerifier(auth.VerifierConfig{
		UserKeys:    []ed25519.PublicKey{users.PublicKey()},
		ServiceKeys: []ed25519.PublicKey{services.PublicKey()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return users, services, v
}

// forge signs arbitrary claims with key, as a compromised or careless
// issuer could.
func forge(t *testing.T, key ed25519.PrivateKey, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = auth.KeyID(key.Public().(ed25519.PublicKey))
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func userClaims(extra jwt.MapClaims) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"sub": "alice@acme.test", "tenant": "acme", "iss": auth.Issuer, "aud": auth.Audience,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func TestVerify(t *testing.T) {
	userKey, svcKey := newKey(t), newKey(t)
	users, services := auth.NewSigner(userKey), auth.NewSigner(svcKey)
	v, err := auth.NewVerifier(auth.VerifierConfig{
		UserKeys: []ed25519.PublicKey{users.PublicKey()}, ServiceKeys: []ed25519.PublicKey{services.PublicKey()},
	})
	if err != nil {
		t.Fatal(err)
	}
	good, err := users.Mint("alice@acme.test", "acme", []string{auth.PolicyOperator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := services.MintService("sluice-delivery", 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := newSigner(t).Mint("alice@acme.test", "acme", nil, time.Hour)
	hmac, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "mallory", "tenant": "acme", "iss": auth.Issuer, "aud": auth.Audience, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(users.PublicKey())) // the classic key-confusion attack
	manyPolicies := make([]any, auth.MaxPolicies+1)
	for i := range manyPolicies {
		manyPolicies[i] = "p"
	}
	hugeSubject := strings.Repeat("x", auth.MaxTokenBytes)

	claims, kind, err := v.Verify(good)
	if err != nil || kind != auth.UserToken {
		t.Fatalf("Verify(good) = %v, %v", kind, err)
	}
	if claims.Subject != "alice@acme.test" || claims.Tenant != "acme" || !claims.Has(auth.PolicyOperator) {
		t.Fatalf("claims = %+v", claims)
	}
	if c, kind, err := v.Verify(svc); err != nil || kind != auth.ServiceToken || c.Tenant != "" {
		t.Fatalf("Verify(service token) = %+v, %v, %v", c, kind, err)
	}
	for name, tok := range map[string]string{
		"expired":                    forge(t, userKey, userClaims(jwt.MapClaims{"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()})),
		"signed by an untrusted key": foreign,
		"without tenant":             forge(t, userKey, userClaims(jwt.MapClaims{"tenant": nil})),
		"without iat":                forge(t, userKey, userClaims(jwt.MapClaims{"iat": nil})),
		"HS256 with the public key":  hmac,
		"garbage":                    "not.a.jwt",
		// Issue 9, item 2: a user identity provider's token naming the
		// service policy was taken for a service and saw every tenant.
		"user key, service policy, no tenant": forge(t, userKey, userClaims(jwt.MapClaims{"tenant": nil, "policies": []any{auth.PolicyService}})),
		"user key, service policy, a tenant":  forge(t, userKey, userClaims(jwt.MapClaims{"policies": []any{auth.PolicyService}})),
		"user key, service issuer":            forge(t, userKey, userClaims(jwt.MapClaims{"iss": auth.ServiceIssuer, "aud": auth.ServiceAudience, "tenant": nil, "policies": []any{auth.PolicyService}})),
		"service key, user issuer":            forge(t, svcKey, userClaims(jwt.MapClaims{"tenant": nil, "policies": []any{auth.PolicyService}})),
		"service key with a tenant":           forge(t, svcKey, userClaims(jwt.MapClaims{"iss": auth.ServiceIssuer, "aud": auth.ServiceAudience, "policies": []any{auth.PolicyService}})),
		"service key, no service policy":      forge(t, svcKey, userClaims(jwt.MapClaims{"iss": auth.ServiceIssuer, "aud": auth.ServiceAudience, "tenant": nil})),
		"service token living 2h":             forge(t, svcKey, userClaims(jwt.MapClaims{"iss": auth.ServiceIssuer, "aud": auth.ServiceAudience, "tenant": nil, "policies": []any{auth.PolicyService}, "exp": time.Now().Add(2 * time.Hour).Unix()})),
		// Item 4: lifetime, policy count and size are bounded.
		"user token living 25h":                   forge(t, userKey, userClaims(jwt.MapClaims{"exp": time.Now().Add(25 * time.Hour).Unix()})),
		"33 policies":                             forge(t, userKey, userClaims(jwt.MapClaims{"policies": manyPolicies})),
		"over the size limit, signature not read": forge(t, userKey, userClaims(jwt.MapClaims{"sub": hugeSubject})),
	} {
		if _, _, err := v.Verify(tok); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("Verify(%s) = %v, want ErrInvalidToken", name, err)
		}
	}
	if _, err := v.VerifyUser(svc); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("VerifyUser(service token) = %v, want ErrInvalidToken", err)
	}
	if _, err := users.Mint("mallory", "acme", []string{auth.PolicyService}, time.Hour); err == nil {
		t.Error("Mint gave a user the service policy")
	}
}

func TestVerifierRefusesAKeyTrustedForBoth(t *testing.T) {
	k := newSigner(t).PublicKey()
	if _, err := auth.NewVerifier(auth.VerifierConfig{UserKeys: []ed25519.PublicKey{k}, ServiceKeys: []ed25519.PublicKey{k}}); err == nil {
		t.Fatal("a key trusted for users and services was accepted")
	}
}

func TestMaxUserLifetimeIsConfigurable(t *testing.T) {
	users := newSigner(t)
	v, err := auth.NewVerifier(auth.VerifierConfig{UserKeys: []ed25519.PublicKey{users.PublicKey()}, MaxUserLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	short, _ := users.Mint("a", "acme", nil, 50*time.Minute)
	long, _ := users.Mint("a", "acme", nil, 2*time.Hour)
	if _, _, err := v.Verify(short); err != nil {
		t.Fatalf("50 min token: %v", err)
	}
	if _, _, err := v.Verify(long); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("2 h token with a 1 h maximum: %v", err)
	}
}

func incoming(headers ...string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(headers...))
}

func TestAuthenticate(t *testing.T) {
	users, services, v := trust(t)
	user, _ := users.Mint("alice@acme.test", "acme", []string{auth.PolicyRestrictPII}, time.Hour)
	svcTok, err := auth.NewServiceTokens(services, "sluice-delivery").Token(context.Background())
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
	t.Run("an oversized header is refused before it is decoded", func(t *testing.T) {
		_, err := v.Authenticate(incoming(auth.AuthorizationHeader, "Bearer "+strings.Repeat("a", 1<<20)))
		if status.Code(statusOf(err)) != codes.Unauthenticated || !strings.Contains(err.Error(), "longer than") {
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
		if auth.ServiceOnly.Allows(c) {
			t.Fatal("the service-only rule allows a user")
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

// TestRules is the method rules' table: who passes each rule.
func TestRules(t *testing.T) {
	callers := map[string]*auth.Caller{
		"administrator":        {Subject: "a", Tenant: "acme", Policies: []string{auth.PolicyAdministrator}},
		"operator":             {Subject: "o", Tenant: "acme", Policies: []string{auth.PolicyOperator}},
		"user":                 {Subject: "u", Tenant: "acme"},
		"restricted user":      {Subject: "r", Tenant: "acme", Policies: []string{auth.PolicyRestrictPII}},
		"service for itself":   {Subject: "sluice-credential", Service: "sluice-credential"},
		"service for a user":   {Subject: "u", Tenant: "acme", Service: "sluice-delivery"},
		"service for an admin": {Subject: "a", Tenant: "acme", Policies: []string{auth.PolicyAdministrator}, Service: "sluice-delivery"},
	}
	want := map[auth.Rule][]string{
		auth.Public:      {"administrator", "operator", "user", "restricted user", "service for itself", "service for a user", "service for an admin"},
		auth.AnyCaller:   {"administrator", "operator", "user", "restricted user", "service for itself", "service for a user", "service for an admin"},
		auth.Admin:       {"administrator", "operator", "service for an admin"},
		auth.ServiceOnly: {"service for itself", "service for a user", "service for an admin"},
		auth.Deny:        {},
	}
	for rule, allowed := range want {
		for name, c := range callers {
			if got, exp := rule.Allows(c), slices.Contains(allowed, name); got != exp {
				t.Errorf("%s allows %s = %v, want %v", rule, name, got, exp)
			}
		}
	}
}

func TestAuthorizerDeniesAMethodWithoutARule(t *testing.T) {
	users, _, v := trust(t)
	admin, _ := users.Mint("a", "acme", []string{auth.PolicyAdministrator}, time.Hour)
	a := auth.Authorizer{Verifier: v, Rules: func(m string) auth.Rule {
		if m == "/x.v1.X/Known" {
			return auth.AnyCaller
		}
		return auth.Deny
	}}
	ctx := incoming(auth.AuthorizationHeader, "Bearer "+admin)
	called := false
	h := func(context.Context, any) (any, error) { called = true; return nil, nil }
	if _, err := a.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/x.v1.X/Forgotten"}, h); status.Code(statusOf(err)) != codes.PermissionDenied || called {
		t.Fatalf("method without a rule: %v (handler called: %v)", err, called)
	}
	if _, err := a.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/x.v1.X/Known"}, h); err != nil || !called {
		t.Fatalf("method with a rule: %v (handler called: %v)", err, called)
	}
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
