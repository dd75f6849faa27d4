// Package auth is caller identity: EdDSA-signed bearer JWTs with tenant,
// subject and policies; the server interceptors that verify them; the client
// interceptor that carries the end caller's token on between services; and
// the policy checks handlers make.
package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Policies a caller may hold, as the product names them.
const (
	PolicyAdministrator = "Datagrid Administrator"
	PolicyOperator      = "Datagrid Operator"
	PolicyRestrictPII   = "Restrict PII access"
	// PolicyService is held only by Sluice's own services, in tokens
	// signed by a service key; a user token that names it is refused.
	PolicyService = "Sluice Service"
)

// Token trust domains. User tokens and service tokens are told apart by the
// key that signed them (two key sets that may not overlap) and by their
// issuer and audience, which a token of the other domain never carries.
const (
	// Issuer and Audience of user tokens.
	Issuer   = "sluice"
	Audience = "sluice"
	// ServiceIssuer and ServiceAudience of the services' own tokens.
	ServiceIssuer   = "sluice-service"
	ServiceAudience = "sluice-service"
)

// Bounds on what a token may carry, checked before and after verification.
const (
	// MaxTokenBytes is the longest token read at all: a longer one is
	// refused before it is decoded.
	MaxTokenBytes = 4 << 10
	// DefaultMaxUserLifetime bounds exp - iat of a user token.
	DefaultMaxUserLifetime = 24 * time.Hour
	// MaxServiceLifetime bounds exp - iat of a service token: services mint
	// short ones and renew them.
	MaxServiceLifetime = time.Hour
	// MaxPolicies is the most policies a token may name.
	MaxPolicies = 32
	// serviceTokenTTL is how long the services' own tokens last.
	serviceTokenTTL = 15 * time.Minute
)

// Claims are the JWT claims Sluice reads.
type Claims struct {
	jwt.RegisteredClaims
	// Tenant is the tenant whose resources the caller may see; never set
	// on service tokens.
	Tenant string `json:"tenant,omitempty"`
	// Policies the caller holds.
	Policies []string `json:"policies,omitempty"`
}

// Has reports whether the claims hold policy.
func (c *Claims) Has(policy string) bool { return slices.Contains(c.Policies, policy) }

// Signer mints tokens with an Ed25519 private key.
type Signer struct {
	key ed25519.PrivateKey
	kid string
}

// NewSigner wraps an Ed25519 private key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, kid: KeyID(key.Public().(ed25519.PublicKey))}
}

// PublicKey answers the key that verifies this signer's tokens.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Mint signs a user token for subject in tenant with policies, valid for
// ttl. The service policy is never minted for a user.
func (s *Signer) Mint(subject, tenant string, policies []string, ttl time.Duration) (string, error) {
	if tenant == "" {
		return "", errors.New("mint token: a user token needs a tenant")
	}
	if slices.Contains(policies, PolicyService) {
		return "", fmt.Errorf("mint token: the %q policy belongs to Sluice's own services, not to users", PolicyService)
	}
	return s.mint(Issuer, Audience, subject, tenant, policies, ttl)
}

// MintService signs a service token for the service named subject: no
// tenant, the service policy, the service issuer and audience.
func (s *Signer) MintService(subject string, ttl time.Duration) (string, error) {
	return s.mint(ServiceIssuer, ServiceAudience, subject, "", []string{PolicyService}, ttl)
}

func (s *Signer) mint(iss, aud, subject, tenant string, policies []string, ttl time.Duration) (string, error) {
	if subject == "" {
		return "", errors.New("mint token: subject is empty")
	}
	if ttl <= 0 {
		return "", errors.New("mint token: ttl must be positive")
	}
	now := time.Now()
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    iss,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{aud},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Tenant:   tenant,
		Policies: policies,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = s.kid
	signed, err := tok.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return signed, nil
}

// Kind says which trust domain verified a token.
type Kind int

// The two kinds of token.
const (
	UserToken Kind = iota + 1
	ServiceToken
)

// VerifierConfig says which keys each kind of token is trusted from.
type VerifierConfig struct {
	// UserKeys verify users' tokens (the identity provider's keys).
	UserKeys []ed25519.PublicKey
	// ServiceKeys verify Sluice services' own tokens. No key may be in
	// both sets: a key that can sign for users must never make a service.
	ServiceKeys []ed25519.PublicKey
	// MaxUserLifetime bounds exp - iat of user tokens;
	// DefaultMaxUserLifetime when zero.
	MaxUserLifetime time.Duration
	// Issuer, when set, also trusts an OpenID provider's tokens for users
	// (--jwt-issuer), beside UserKeys.
	Issuer *IssuerConfig
}

// Verifier checks tokens against the two trusted key sets.
type Verifier struct {
	users, services       map[string]ed25519.PublicKey
	userParser, svcParser *jwt.Parser
	maxUserLifetime       time.Duration
	issuer                *issuer
	verified              verified
}

func parser(iss, aud string) *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(iss),
		jwt.WithAudience(aud),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
	)
}

// NewVerifier answers a verifier for cfg, refusing a key trusted for both
// users and services.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	v := &Verifier{
		users:           map[string]ed25519.PublicKey{},
		services:        map[string]ed25519.PublicKey{},
		userParser:      parser(Issuer, Audience),
		svcParser:       parser(ServiceIssuer, ServiceAudience),
		maxUserLifetime: cfg.MaxUserLifetime,
	}
	if v.maxUserLifetime <= 0 {
		v.maxUserLifetime = DefaultMaxUserLifetime
	}
	for _, k := range cfg.UserKeys {
		v.users[KeyID(k)] = k
	}
	for _, k := range cfg.ServiceKeys {
		if _, ok := v.users[KeyID(k)]; ok {
			return nil, errors.New("a key is trusted for both user and service tokens: give services a signing key of their own (--signing-key) that is not among --jwt-public-key")
		}
		v.services[KeyID(k)] = k
	}
	if cfg.Issuer != nil {
		var err error
		if v.issuer, err = newIssuer(*cfg.Issuer); err != nil {
			return nil, err
		}
		if cfg.Issuer.URL == Issuer || cfg.Issuer.URL == ServiceIssuer {
			return nil, fmt.Errorf("--jwt-issuer %q is the name of Sluice's own tokens' issuer", cfg.Issuer.URL)
		}
	}
	if len(v.users)+len(v.services) == 0 && v.issuer == nil {
		return nil, errors.New("no trusted keys: configure --jwt-public-key or --jwt-issuer for users and --signing-key for services")
	}
	return v, nil
}

// ErrInvalidToken is returned for any token that does not verify. It never
// carries the token itself.
var ErrInvalidToken = errors.New("invalid token")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidToken}, args...)...)
}

// Verify checks a token of either kind and answers its claims and kind.
// The signing key decides the kind; the kind's own issuer, audience and
// rules must then hold.
func (v *Verifier) Verify(token string) (*Claims, Kind, error) {
	return v.VerifyContext(context.Background(), token)
}

// VerifyContext is Verify, with ctx bounding a fetch of the trusted
// issuer's keys. A token that names the trusted OpenID issuer is verified
// by that issuer's keys alone; any other by Sluice's own key sets.
func (v *Verifier) VerifyContext(ctx context.Context, token string) (*Claims, Kind, error) {
	if len(token) > MaxTokenBytes {
		return nil, 0, invalid("longer than %d bytes", MaxTokenBytes)
	}
	if v.issuer != nil && unverifiedIssuer(token) == v.issuer.cfg.URL {
		c, err := v.issuer.verify(ctx, token, v.maxUserLifetime)
		return c, UserToken, err
	}
	now := time.Now()
	if c, kind, ok := v.verified.get(token, now); ok {
		return c, kind, nil
	}
	kid, err := headerKeyID(token)
	if err != nil {
		return nil, 0, err
	}
	kind, keys, p := UserToken, v.users, v.userParser
	if _, ok := v.services[kid]; ok {
		kind, keys, p = ServiceToken, v.services, v.svcParser
	}
	c, err := v.verify(token, p, keys, kind)
	if err != nil {
		return nil, kind, err
	}
	v.verified.put(token, c, kind, now)
	return c, kind, nil
}

// VerifyUser checks a token that must be a user's.
func (v *Verifier) VerifyUser(token string) (*Claims, error) {
	return v.VerifyUserContext(context.Background(), token)
}

// VerifyUserContext is VerifyUser with ctx bounding a fetch of keys.
func (v *Verifier) VerifyUserContext(ctx context.Context, token string) (*Claims, error) {
	c, kind, err := v.VerifyContext(ctx, token)
	if err != nil {
		return nil, err
	}
	if kind != UserToken {
		return nil, invalid("must be a user's token, not a service's")
	}
	return c, nil
}

// headerKeyID reads the kid of a token's header without trusting anything
// else in it; only the kid chooses which key set to verify against.
func headerKeyID(token string) (string, error) {
	head, _, ok := strings.Cut(token, ".")
	if !ok || len(head) > 1024 {
		return "", invalid("malformed")
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return "", invalid("malformed")
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return "", invalid("malformed")
	}
	return h.Kid, nil
}

func (v *Verifier) verify(token string, p *jwt.Parser, keys map[string]ed25519.PublicKey, kind Kind) (*Claims, error) {
	claims := &Claims{}
	_, err := p.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if k, ok := keys[kid]; ok {
			return k, nil
		}
		return nil, errors.New("unknown signing key")
	})
	if err != nil {
		// jwt's messages describe the failed check (expired, bad signature),
		// never the token's content, so they are safe to keep.
		return nil, invalid("%s", jwtReason(err))
	}
	if claims.Subject == "" {
		return nil, invalid("no subject")
	}
	if claims.IssuedAt == nil {
		return nil, invalid("no iat (issued at)")
	}
	if len(claims.Policies) > MaxPolicies {
		return nil, invalid("names %d policies; at most %d", len(claims.Policies), MaxPolicies)
	}
	lifetime := claims.ExpiresAt.Sub(claims.IssuedAt.Time)
	switch kind {
	case ServiceToken:
		if claims.Tenant != "" {
			return nil, invalid("a service token never carries a tenant")
		}
		if !claims.Has(PolicyService) {
			return nil, invalid("a service token must hold the %s policy", PolicyService)
		}
		if lifetime > MaxServiceLifetime {
			return nil, invalid("a service token may live at most %s; this one lives %s", MaxServiceLifetime, lifetime)
		}
	default:
		if claims.Tenant == "" {
			return nil, invalid("no tenant")
		}
		if claims.Has(PolicyService) {
			return nil, invalid("a user token may not hold the %s policy", PolicyService)
		}
		if lifetime > v.maxUserLifetime {
			return nil, invalid("lives %s; user tokens may live at most %s", lifetime, v.maxUserLifetime)
		}
	}
	return claims, nil
}

func jwtReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "signature does not verify with a trusted key"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong issuer or audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "a required claim is missing"
	default:
		return "rejected"
	}
}

// KeyID is a short stable id of a public key, used as the JWT `kid`.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// LoadOrCreateSigningKey reads a PEM (PKCS #8) Ed25519 private key, creating
// it with mode 0600 when the file does not exist.
func LoadOrCreateSigningKey(path string) (ed25519.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		return parsePrivateKey(b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) { // another process created it first
			return LoadOrCreateSigningKey(path)
		}
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	defer f.Close()
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	return key, nil
}

func parsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("signing key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key: want Ed25519, got %T", k)
	}
	return ek, nil
}

// EncodePublicKey answers the PEM (PKIX) form of a public key.
func EncodePublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// LoadPublicKeys reads every PEM public key (PKIX) or private key (PKCS #8,
// whose public half is used) in the files.
func LoadPublicKeys(paths ...string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read public key: %w", err)
		}
		for {
			var block *pem.Block
			block, b = pem.Decode(b)
			if block == nil {
				break
			}
			switch block.Type {
			case "PUBLIC KEY":
				k, err := x509.ParsePKIXPublicKey(block.Bytes)
				if err != nil {
					return nil, fmt.Errorf("public key %s: %w", p, err)
				}
				ek, ok := k.(ed25519.PublicKey)
				if !ok {
					return nil, fmt.Errorf("public key %s: want Ed25519, got %T", p, k)
				}
				keys = append(keys, ek)
			case "PRIVATE KEY":
				k, err := parsePrivateKey(pem.EncodeToMemory(block))
				if err != nil {
					return nil, fmt.Errorf("%s: %w", p, err)
				}
				keys = append(keys, k.Public().(ed25519.PublicKey))
			}
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no Ed25519 public keys found")
	}
	return keys, nil
}
