package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// IssuerConfig trusts an OpenID provider's tokens for users: the
// operator's identity provider, found by discovery
// ({URL}/.well-known/openid-configuration), its keys fetched from its JWKS
// and fetched again when a token names a key not seen yet (rotation).
type IssuerConfig struct {
	// URL is the issuer, exactly as its tokens' iss says.
	URL string
	// Audience is what a token's aud must hold.
	Audience string
	// TenantClaim and PoliciesClaim name the claims that carry the
	// caller's tenant and policies (a list, or one space-separated string);
	// "tenant" and "policies" when empty.
	TenantClaim, PoliciesClaim string
	// HTTPClient fetches discovery and keys; a 10 s timeout by default.
	HTTPClient *http.Client
}

// issuer verifies one provider's tokens.
type issuer struct {
	cfg IssuerConfig
	mu  sync.Mutex
	// verifier is made on first use, by discovery, and again after a
	// failed discovery: the provider may start after the services.
	verifier *oidc.IDTokenVerifier
}

func newIssuer(cfg IssuerConfig) (*issuer, error) {
	if cfg.URL == "" || cfg.Audience == "" {
		return nil, fmt.Errorf("a trusted issuer needs its URL and the audience its tokens carry")
	}
	if cfg.TenantClaim == "" {
		cfg.TenantClaim = "tenant"
	}
	if cfg.PoliciesClaim == "" {
		cfg.PoliciesClaim = "policies"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &issuer{cfg: cfg}, nil
}

func (i *issuer) verifierFor(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.verifier != nil {
		return i.verifier, nil
	}
	ctx = oidc.ClientContext(ctx, i.cfg.HTTPClient)
	p, err := oidc.NewProvider(ctx, i.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("discover the token issuer %s: %w", i.cfg.URL, err)
	}
	keys := newRemoteKeys(i.cfg.HTTPClient, jwksURI(p))
	i.verifier = oidc.NewVerifier(i.cfg.URL, keys, &oidc.Config{ClientID: i.cfg.Audience,
		SupportedSigningAlgs: []string{oidc.RS256, oidc.ES256, oidc.EdDSA}})
	return i.verifier, nil
}

func jwksURI(p *oidc.Provider) string {
	var meta struct {
		JWKS string `json:"jwks_uri"`
	}
	_ = p.Claims(&meta)
	return meta.JWKS
}

// verify checks a token of the issuer and reads Sluice's claims from it,
// by the configured names.
func (i *issuer) verify(ctx context.Context, token string, maxLifetime time.Duration) (*Claims, error) {
	v, err := i.verifierFor(ctx)
	if err != nil {
		return nil, invalid("its issuer cannot be reached to verify it")
	}
	idt, err := v.Verify(oidc.ClientContext(ctx, i.cfg.HTTPClient), token)
	if err != nil {
		return nil, invalid("%s", oidcReason(err))
	}
	var raw map[string]any
	if err := idt.Claims(&raw); err != nil {
		return nil, invalid("malformed")
	}
	c := &Claims{}
	c.Subject, c.Issuer = idt.Subject, idt.Issuer
	c.Tenant, _ = raw[i.cfg.TenantClaim].(string)
	switch p := raw[i.cfg.PoliciesClaim].(type) {
	case string:
		c.Policies = strings.Fields(p)
	case []any:
		for _, x := range p {
			s, ok := x.(string)
			if !ok {
				return nil, invalid("claim %s must list strings", i.cfg.PoliciesClaim)
			}
			c.Policies = append(c.Policies, s)
		}
	case nil:
	default:
		return nil, invalid("claim %s must be a list or a string", i.cfg.PoliciesClaim)
	}
	iat, ok := raw["iat"].(float64)
	switch {
	case c.Subject == "":
		return nil, invalid("no subject")
	case !ok:
		return nil, invalid("no iat (issued at)")
	case c.Tenant == "":
		return nil, invalid("no tenant (claim %s)", i.cfg.TenantClaim)
	case len(c.Policies) > MaxPolicies:
		return nil, invalid("names %d policies; at most %d", len(c.Policies), MaxPolicies)
	case c.Has(PolicyService):
		return nil, invalid("a user token may not hold the %s policy", PolicyService)
	}
	if lifetime := idt.Expiry.Sub(time.Unix(int64(iat), 0)); lifetime > maxLifetime {
		return nil, invalid("lives %s; user tokens may live at most %s", lifetime, maxLifetime)
	}
	return c, nil
}

// oidcReason says why go-oidc refused a token, without its content.
func oidcReason(err error) string {
	var expired *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case asExpired(err, &expired):
		return "expired"
	case strings.Contains(msg, "audience"):
		return "wrong audience"
	case strings.Contains(msg, "issuer"):
		return "wrong issuer"
	case strings.Contains(msg, "signature"), strings.Contains(msg, "key"):
		return "signature does not verify with the issuer's keys"
	case strings.Contains(msg, "algorithm"):
		return "signed with an algorithm not accepted"
	}
	return "rejected"
}

func asExpired(err error, target **oidc.TokenExpiredError) bool {
	e, ok := err.(*oidc.TokenExpiredError)
	if ok {
		*target = e
	}
	return ok
}

// unverifiedIssuer reads a token's iss without trusting it: only to choose
// which verification it goes through.
func unverifiedIssuer(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > MaxTokenBytes {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Iss
}
