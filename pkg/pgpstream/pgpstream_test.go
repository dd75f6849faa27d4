package pgpstream_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/pkg/pgpstream"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// A stream encrypted to a key with an encryption subkey decrypts with gpg
// to the bytes written.
func TestEncryptDecryptsWithGPG(t *testing.T) {
	g := testenv.NewGnuPG(t)
	armored := g.Key("Customer <exports@acme.test>", "default", "default") // primary + encryption subkey
	r, err := pgpstream.ParseRecipient(armored)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w, err := r.Encrypt(&out, "customers.csv")
	if err != nil {
		t.Fatal(err)
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 100003)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "customers.csv.gpg")
	if err := os.WriteFile(file, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	got := g.Run(nil, "--decrypt", file)
	if !bytes.Equal(got, data) {
		t.Fatalf("gpg decrypted %d bytes that differ from the %d written", len(got), len(data))
	}
}

// A key whose only encryption key is the primary is refused, saying so.
func TestPrimaryOnlyKeyIsRefused(t *testing.T) {
	g := testenv.NewGnuPG(t)
	for _, tc := range []struct{ uid, algo, usage string }{
		{"Primary Encrypts <p@acme.test>", "rsa2048", "cert,encr"},
		{"Signing Only <s@acme.test>", "ed25519", "sign"},
	} {
		_, err := pgpstream.ParseRecipient(g.Key(tc.uid, tc.algo, tc.usage))
		if !errors.Is(err, pgpstream.ErrNoEncryptionSubkey) {
			t.Fatalf("%s: got %v, want ErrNoEncryptionSubkey", tc.uid, err)
		}
	}
	if _, err := pgpstream.ParseRecipient("not a key"); err == nil {
		t.Fatal("garbage accepted as a key")
	}
}
