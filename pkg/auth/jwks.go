package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	jose "github.com/go-jose/go-jose/v4"
)

// remoteKeys is an issuer's JWKS, fetched again when a token names a key
// not seen yet. go-oidc's own remote key set answers such a token with a
// fetch that was already under way, which may have read the keys before
// the rotation that made the token's key: on a loaded machine the first
// token of a new key was then refused. Here a token that needs fresh keys
// waits for a fetch begun after it asked.
type remoteKeys struct {
	url    string
	client *http.Client

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	started   uint64        // fetches begun
	completed uint64        // the last fetch ended, by its number
	err       error         // of the last fetch
	inflight  chan struct{} // closed when the fetch under way ends
	waiting   int           // callers waiting on a fetch, for tests
}

// maxJWKSBytes bounds an issuer's answer.
const maxJWKSBytes = 1 << 20

var keyAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

func newRemoteKeys(client *http.Client, url string) *remoteKeys {
	return &remoteKeys{url: url, client: client}
}

// VerifySignature checks raw's signature with the issuer's keys and
// answers its payload (go-oidc's KeySet).
func (r *remoteKeys) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, keyAlgorithms)
	if err != nil {
		return nil, fmt.Errorf("malformed signature: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("a token needs exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	r.mu.Lock()
	cached := r.keys
	r.mu.Unlock()
	payload, known := verifyWith(jws, cached, kid)
	if payload != nil {
		return payload, nil
	}
	if known {
		// The key it names is there and does not verify it: a fetch
		// would not change that, and a forged token costs no fetch.
		return nil, errors.New("signature does not verify")
	}
	keys, err := r.fresh(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch the issuer's keys: %w", err)
	}
	if payload, _ := verifyWith(jws, keys, kid); payload != nil {
		return payload, nil
	}
	return nil, errors.New("signature does not verify with any of the issuer's keys")
}

// verifyWith tries the keys kid names (all when it names none); known says
// whether kid named one of them.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, known bool) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		known = kid != ""
		if p, err := jws.Verify(&keys[i]); err == nil {
			return p, true
		}
	}
	return nil, known
}

// fresh answers the keys of a fetch begun after it was called: it waits
// for one under way to end, then begins another, shared with everyone
// who asked meanwhile.
func (r *remoteKeys) fresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	need := r.started + 1
	for r.completed < need {
		if r.inflight == nil {
			r.started++
			r.inflight = make(chan struct{})
			go r.fetch(r.started, r.inflight)
		}
		ch := r.inflight
		r.waiting++
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		r.mu.Lock()
		r.waiting--
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return r.keys, r.err
}

// fetch reads the JWKS on its own context: callers share it, and one
// giving up must not end it for the others.
func (r *remoteKeys) fetch(n uint64, done chan struct{}) {
	keys, err := r.get()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.keys = keys
	}
	r.err, r.completed, r.inflight = err, n, nil
	close(done)
}

func (r *remoteKeys) get() ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, r.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", r.url, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode %s: %w", r.url, err)
	}
	return set.Keys, nil
}
