package pgpstream_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/pkg/pgpstream"
)

// gnupg runs the real gpg in a keyring of the test's own.
type gnupg struct {
	t    *testing.T
	home string
}

func newGnuPG(t *testing.T) *gnupg {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Fatal("gpg is needed to check encrypted output with a tool no one here wrote: apt-get install -y gnupg")
	}
	// A short path: gpg-agent's socket path has a length limit.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	g := &gnupg{t: t, home: home}
	t.Cleanup(func() {
		cmd := exec.Command("gpgconf", "--kill", "gpg-agent")
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		_ = cmd.Run()
		os.RemoveAll(home)
	})
	return g
}

func (g *gnupg) run(stdin []byte, args ...string) []byte {
	g.t.Helper()
	cmd := exec.Command("gpg", append([]string{"--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.home)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		g.t.Fatalf("gpg %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

func (g *gnupg) key(uid, algo, usage string) string {
	g.run(nil, "--quick-gen-key", uid, algo, usage, "never")
	return string(g.run(nil, "--armor", "--export", uid))
}

// A stream encrypted to a key with an encryption subkey decrypts with gpg
// to the bytes written.
func TestEncryptDecryptsWithGPG(t *testing.T) {
	g := newGnuPG(t)
	armored := g.key("Customer <exports@acme.test>", "default", "default") // primary + encryption subkey
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
	got := g.run(nil, "--decrypt", file)
	if !bytes.Equal(got, data) {
		t.Fatalf("gpg decrypted %d bytes that differ from the %d written", len(got), len(data))
	}
}

// A key whose only encryption key is the primary is refused, saying so.
func TestPrimaryOnlyKeyIsRefused(t *testing.T) {
	g := newGnuPG(t)
	for _, tc := range []struct{ uid, algo, usage string }{
		{"Primary Encrypts <p@acme.test>", "rsa2048", "cert,encr"},
		{"Signing Only <s@acme.test>", "ed25519", "sign"},
	} {
		_, err := pgpstream.ParseRecipient(g.key(tc.uid, tc.algo, tc.usage))
		if !errors.Is(err, pgpstream.ErrNoEncryptionSubkey) {
			t.Fatalf("%s: got %v, want ErrNoEncryptionSubkey", tc.uid, err)
		}
	}
	if _, err := pgpstream.ParseRecipient("not a key"); err == nil {
		t.Fatal("garbage accepted as a key")
	}
}
