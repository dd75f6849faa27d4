package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// GnuPG runs the real gpg in a keyring of the test's own, so that
// encrypted output is checked by a tool no one here wrote.
type GnuPG struct {
	t    testing.TB
	home string
}

// NewGnuPG answers an empty keyring, removed when the test ends. A machine
// without gpg fails the test with the fix.
func NewGnuPG(t testing.TB) *GnuPG {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Fatal("gpg is needed to check encrypted output with a tool no one here wrote: apt-get install -y gnupg")
	}
	// A short path: gpg-agent's socket path has a length limit.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	g := &GnuPG{t: t, home: home}
	t.Cleanup(func() {
		cmd := exec.Command("gpgconf", "--kill", "gpg-agent")
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		_ = cmd.Run()
		os.RemoveAll(home)
	})
	return g
}

// Run runs gpg with args in batch mode, stdin as its input, and answers its
// output; a failure fails the test with gpg's own words.
func (g *GnuPG) Run(stdin []byte, args ...string) []byte {
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

// Key makes a key for uid (algo and usage as gpg's --quick-gen-key takes
// them, e.g. "default", "default") and answers its armored public key.
func (g *GnuPG) Key(uid, algo, usage string) string {
	g.Run(nil, "--quick-gen-key", uid, algo, usage, "never")
	return string(g.Run(nil, "--armor", "--export", uid))
}

// Decrypt answers the plaintext of a message encrypted to a key of the
// keyring.
func (g *GnuPG) Decrypt(msg []byte) []byte {
	return g.Run(msg, "--decrypt")
}
