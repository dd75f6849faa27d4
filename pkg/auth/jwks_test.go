package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// jwksServer serves a key set that rotates on request; hold, when set, is
// waited on by each request after it has read the keys it will answer.
type jwksServer struct {
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	signers map[string]jose.Signer
	hold    chan struct{}
	read    chan struct{} // a request has read its keys
	fetches atomic.Int32
}

func (s *jwksServer) rotate(t *testing.T) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid := rand.Text()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"})
	if s.signers == nil {
		s.signers = map[string]jose.Signer{}
	}
	s.signers[kid] = sig
	return kid
}

func (s *jwksServer) sign(t *testing.T, kid, payload string) string {
	t.Helper()
	s.mu.Lock()
	sig := s.signers[kid]
	s.mu.Unlock()
	jws, err := sig.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), s.keys...)})
	hold, read := s.hold, s.read
	s.mu.Unlock()
	if hold != nil {
		read <- struct{}{}
		<-hold
	}
	_, _ = w.Write(b)
}

// A token of a key made while a fetch was under way, having read the keys
// before it, verifies: it is not answered by that fetch (go-oidc's remote
// key set did, and refused a new key's first token on a loaded machine).
// A forged signature under a known key costs no fetch.
func TestAKeyMadeDuringAFetchVerifies(t *testing.T) {
	s := &jwksServer{}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	first := s.rotate(t)
	keys := newRemoteKeys(srv.Client(), srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The first token's fetch reads the keys, then waits.
	s.mu.Lock()
	s.hold, s.read = make(chan struct{}), make(chan struct{}, 4)
	s.mu.Unlock()
	errs := make(chan error, 2)
	go func() {
		_, err := keys.VerifySignature(ctx, s.sign(t, first, "one"))
		errs <- err
	}()
	<-s.read
	// Meanwhile a new key signs a token, which asks for keys while that
	// fetch is under way.
	second := s.rotate(t)
	tok := s.sign(t, second, "two")
	var got []byte
	go func() {
		var err error
		got, err = keys.VerifySignature(ctx, tok)
		errs <- err
	}()
	for {
		keys.mu.Lock()
		w := keys.waiting
		keys.mu.Unlock()
		if w == 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the two tokens never waited on the fetch")
		case <-time.After(time.Millisecond):
		}
	}
	s.mu.Lock()
	close(s.hold)
	s.hold = nil
	s.mu.Unlock()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("verify: %v", err)
		}
	}
	if string(got) != "two" {
		t.Fatalf("payload %q", got)
	}
	if n := s.fetches.Load(); n != 2 {
		t.Errorf("%d fetches; want 2 (the one under way, then one for the new key)", n)
	}

	// Both keys known now: no fetch, for good tokens or forged ones.
	before := s.fetches.Load()
	if _, err := keys.VerifySignature(ctx, s.sign(t, first, "three")); err != nil {
		t.Fatal(err)
	}
	a, b := s.sign(t, first, "four"), s.sign(t, second, "four")
	forged := a[:len(a)-86] + b[len(b)-86:] // an Ed25519 signature is 86 characters
	if _, err := keys.VerifySignature(ctx, forged); err == nil {
		t.Fatal("a forged signature verified")
	}
	if n := s.fetches.Load(); n != before {
		t.Errorf("%d fetches for known keys", n-before)
	}
	// An unknown key is fetched for once, and refused.
	other := &jwksServer{}
	kid := other.rotate(t)
	if _, err := keys.VerifySignature(ctx, other.sign(t, kid, "five")); err == nil {
		t.Fatal("a token of a key the issuer does not have verified")
	}
	if n := s.fetches.Load(); n != before+1 {
		t.Errorf("%d fetches for an unknown key; want 1", n-before)
	}
}
