package pagination_test

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/sluicehq/sluice/pkg/pagination"
)

func TestSize(t *testing.T) {
	for in, want := range map[int32]int{0: pagination.DefaultPageSize, 7: 7, 5000: pagination.MaxPageSize} {
		if got, err := pagination.Size(in); err != nil || got != want {
			t.Errorf("Size(%d) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := pagination.Size(-1); err == nil {
		t.Error("Size(-1) accepted a negative size")
	}
}

func TestTokens(t *testing.T) {
	d := pagination.Digest("tenants/a/environments/production", "")
	tok := pagination.Encode("tenants/a/environments/production/credentials/c", d)
	after, err := pagination.Decode(tok, d)
	if err != nil || after != "tenants/a/environments/production/credentials/c" {
		t.Fatalf("Decode = %q, %v", after, err)
	}
	if _, err := pagination.Decode(tok, pagination.Digest("tenants/b/environments/production", "")); err == nil {
		t.Fatal("a token was accepted for another parent")
	}
	if _, err := pagination.Decode("%%%", d); err == nil {
		t.Fatal("garbage was accepted as a token")
	}
	if after, err := pagination.Decode("", d); err != nil || after != "" {
		t.Fatalf("empty token = %q, %v", after, err)
	}
	// Fields are length-prefixed, so shifting text between them changes the digest.
	if pagination.Digest("ab", "c") == pagination.Digest("a", "bc") {
		t.Fatal("digest confuses field boundaries")
	}
}

func FuzzDecode(f *testing.F) {
	d := pagination.Digest("p")
	f.Add(pagination.Encode("k", d))
	f.Add("eyJhIjoxfQ")
	f.Fuzz(func(t *testing.T, tok string) {
		after, err := pagination.Decode(tok, d)
		if err != nil {
			return
		}
		// Whatever a token resumes after survives a round trip.
		again, err := pagination.Decode(pagination.Encode(after, d), d)
		if err != nil || again != after {
			t.Fatalf("round trip of %q: %q, %v", after, again, err)
		}
	})
}

// A sealed token opens with its key only, and says nothing of what it
// holds; an empty token stays empty.
func TestSealedTokens(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	plain := pagination.Encode("tenants/acme/environments/production/deliveries/d-secret", pagination.Digest("p", "f"))
	sealed, err := pagination.Seal(key, plain)
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := base64.RawURLEncoding.DecodeString(sealed); bytes.Contains(raw, []byte("d-secret")) || sealed == plain {
		t.Fatal("the sealed token shows what it holds")
	}
	if got, err := pagination.Open(key, sealed); err != nil || got != plain {
		t.Fatalf("Open = %q, %v", got, err)
	}
	other := bytes.Repeat([]byte{8}, 32)
	if _, err := pagination.Open(other, sealed); err == nil {
		t.Fatal("a token opened with another key")
	}
	if _, err := pagination.Open(key, plain); err == nil {
		t.Fatal("an unsealed token opened")
	}
	if s, _ := pagination.Seal(key, ""); s != "" {
		t.Fatalf("an empty token sealed as %q", s)
	}
	if o, err := pagination.Open(key, ""); o != "" || err != nil {
		t.Fatalf("an empty token opened as %q, %v", o, err)
	}
}
