// Package auth is caller identity: EdDSA-signed bearer JWTs with tenant,
// subject and policies; the server interceptors that verify them; the client
// interceptor that carries the end caller's token on between services; and
// the policy checks handlers make.
package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Policies a caller may hold, as the product names them.
const (
	PolicyAdministrator = "Datagrid Administrator"
	PolicyOperator      = "Datagrid Operator"
	PolicyRestrictPII   = "Restrict PII access"
	// PolicyService is held only by Sluice's own services; internal RPCs
	// require it.
	PolicyService = "Sluice Service"
)

// Issuer and audience of every Sluice token.
const (
	Issuer   = "sluice"
	Audience = "sluice"
)

// Claims are the JWT claims Sluice reads.
type Claims struct {
	jwt.RegisteredClaims
	// Tenant is the tenant whose resources the caller may see; empty only
	// for service tokens.
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

// Mint signs a token for subject in tenant with policies, valid for ttl.
func (s *Signer) Mint(subject, tenant string, policies []string, ttl time.Duration) (string, error) {
	if subject == "" {
		return "", errors.New("mint token: subject is empty")
	}
	if ttl <= 0 {
		return "", errors.New("mint token: ttl must be positive")
	}
	now := time.Now()
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{Audience},
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

// Verifier checks tokens against a set of Ed25519 public keys.
type Verifier struct {
	keys   map[string]ed25519.PublicKey
	parser *jwt.Parser
}

// NewVerifier trusts the given public keys.
func NewVerifier(keys ...ed25519.PublicKey) *Verifier {
	v := &Verifier{
		keys: make(map[string]ed25519.PublicKey, len(keys)),
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
			jwt.WithIssuer(Issuer),
			jwt.WithAudience(Audience),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(30*time.Second),
		),
	}
	for _, k := range keys {
		v.keys[KeyID(k)] = k
	}
	return v
}

// ErrInvalidToken is returned for any token that does not verify. It never
// carries the token itself.
var ErrInvalidToken = errors.New("invalid token")

// Verify parses and checks a token, answering its claims.
func (v *Verifier) Verify(token string) (*Claims, error) {
	claims := &Claims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if k, ok := v.keys[kid]; ok {
			return k, nil
		}
		return nil, errors.New("unknown signing key")
	})
	if err != nil {
		// jwt's messages describe the failed check (expired, bad signature),
		// never the token's content, so they are safe to keep.
		return nil, fmt.Errorf("%w: %s", ErrInvalidToken, jwtReason(err))
	}
	if claims.Subject == "" {
		return nil, fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	if claims.Tenant == "" && !claims.Has(PolicyService) {
		return nil, fmt.Errorf("%w: no tenant", ErrInvalidToken)
	}
	return claims, nil
}

func jwtReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "signature does not verify with a trusted key"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong issuer or audience"
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
