package auth_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/testidp"
)

// startIdP serves a test identity provider on loopback.
func startIdP(t *testing.T, alg string) (*testidp.Provider, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	p, err := testidp.New(testidp.Config{Issuer: issuer, Audience: "sluice-console", Algorithm: alg,
		Users:  []testidp.User{{Name: "ada@acme.test", Password: "pw", Tenant: "acme", Policies: []string{auth.PolicyAdministrator}}, {Name: "svc", Password: "pw", Tenant: "acme", Policies: []string{auth.PolicyService}}},
		Client: []testidp.Client{{ID: "console", Secret: "s3cret", RedirectURIs: []string{"http://127.0.0.1/callback"}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(p)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return p, issuer
}

func login(t *testing.T, issuer, user string) string {
	t.Helper()
	tok, err := testidp.Login(context.Background(), issuer, "console", "s3cret", "http://127.0.0.1/callback", user, "pw")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Tokens of a trusted OpenID provider verify by its JWKS, through a key
// rotation and in each algorithm; the claims map to the caller; another
// issuer's token, another audience, a forged policy and a wrong password
// are refused.
func TestIssuerTokens(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			idp, issuer := startIdP(t, alg)
			v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: &auth.IssuerConfig{URL: issuer, Audience: "sluice-console"}})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			first := login(t, issuer, "ada@acme.test")
			c, kind, err := v.VerifyContext(ctx, first)
			if err != nil || kind != auth.UserToken || c.Subject != "ada@acme.test" || c.Tenant != "acme" || !c.Has(auth.PolicyAdministrator) {
				t.Fatalf("verify: %+v %v %v", c, kind, err)
			}
			// A new key signs from now on; the old key's tokens still verify.
			if _, err := idp.Rotate(""); err != nil {
				t.Fatal(err)
			}
			second := login(t, issuer, "ada@acme.test")
			if head(first) == head(second) {
				t.Fatal("the rotation did not change the signing key")
			}
			for _, tok := range []string{first, second} {
				if _, _, err := v.VerifyContext(ctx, tok); err != nil {
					t.Errorf("after the rotation: %v", err)
				}
			}
			// A forged signature: the payload of one token under another's.
			p1, p2 := strings.Split(first, "."), strings.Split(second, ".")
			if _, _, err := v.VerifyContext(ctx, p1[0]+"."+p1[1]+"."+p2[2]); !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("a forged signature: %v", err)
			}
			// A provider's token may not make a Sluice service.
			if _, _, err := v.VerifyContext(ctx, login(t, issuer, "svc")); !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("a user token holding the service policy: %v", err)
			}
			// Another audience.
			other, err := auth.NewVerifier(auth.VerifierConfig{Issuer: &auth.IssuerConfig{URL: issuer, Audience: "someone-else"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := other.VerifyContext(ctx, second); !errors.Is(err, auth.ErrInvalidToken) || !strings.Contains(err.Error(), "audience") {
				t.Errorf("another audience: %v", err)
			}
		})
	}
	t.Run("another issuer", func(t *testing.T) {
		_, trusted := startIdP(t, "RS256")
		_, untrusted := startIdP(t, "RS256")
		v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: &auth.IssuerConfig{URL: trusted, Audience: "sluice-console"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := v.VerifyContext(context.Background(), login(t, untrusted, "ada@acme.test")); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("a token of an issuer not trusted: %v", err)
		}
		if _, err := testidp.Login(context.Background(), trusted, "console", "s3cret", "http://127.0.0.1/callback", "ada@acme.test", "wrong"); err == nil {
			t.Error("a wrong password logged in")
		}
	})
	t.Run("an issuer down", func(t *testing.T) {
		v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: &auth.IssuerConfig{URL: "http://127.0.0.1:1", Audience: "x",
			HTTPClient: &http.Client{Timeout: time.Second}}})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = v.VerifyContext(context.Background(), "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjEifQ.c2ln")
		if !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("with its issuer unreachable: %v", err)
		}
	})
}

func head(tok string) string { return tok[:strings.Index(tok, ".")] }
