package auth

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// verified remembers the tokens signed by Sluice's own keys that verified,
// until they expire (at most verifiedFor): every service verifies the
// service token of each call, and a delivery makes four calls across
// three services, each an Ed25519 verification and a JSON parse (a third
// of the destination service's CPU under small deliveries). Only tokens
// that verified are kept, by their SHA-256, never the token itself; one
// that fails is checked in full each time.
type verified struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	claims *Claims
	kind   Kind
	until  time.Time
}

const (
	// verifiedFor bounds how long a token is trusted without checking its
	// signature again.
	verifiedFor = time.Minute
	// maxVerified bounds the tokens remembered.
	maxVerified = 4096
	// leeway is the parser's allowance past a token's expiry.
	leeway = 30 * time.Second
)

func (v *verified) get(token string, now time.Time) (*Claims, Kind, bool) {
	key := sha256.Sum256([]byte(token))
	v.mu.Lock()
	e, ok := v.entries[key]
	v.mu.Unlock()
	if !ok || !now.Before(e.until) {
		return nil, 0, false
	}
	return e.claims.clone(), e.kind, true
}

func (v *verified) put(token string, c *Claims, kind Kind, now time.Time) {
	until := now.Add(verifiedFor)
	if c.ExpiresAt != nil && c.ExpiresAt.Add(leeway).Before(until) {
		until = c.ExpiresAt.Add(leeway)
	}
	key := sha256.Sum256([]byte(token))
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.entries == nil {
		v.entries = map[[sha256.Size]byte]verifiedToken{}
	}
	if len(v.entries) >= maxVerified {
		for k, e := range v.entries {
			if !now.Before(e.until) {
				delete(v.entries, k)
			}
		}
		if len(v.entries) >= maxVerified {
			clear(v.entries) // many callers at once: start again
		}
	}
	v.entries[key] = verifiedToken{claims: c.clone(), kind: kind, until: until}
}

// clone answers a copy of c that shares nothing a caller could change.
func (c *Claims) clone() *Claims {
	cp := *c
	cp.Policies = slices.Clone(c.Policies)
	cp.Audience = slices.Clone(c.Audience)
	for _, d := range []**jwt.NumericDate{&cp.ExpiresAt, &cp.NotBefore, &cp.IssuedAt} {
		if *d != nil {
			t := **d
			*d = &t
		}
	}
	return &cp
}
