// Package pgpstream encrypts a file's byte stream to a customer's OpenPGP
// public key as it is written (ProtonMail/go-crypto), so that an encrypted
// delivery needs no more memory than a plain one.
package pgpstream

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Recipient is a public key with an encryption subkey.
type Recipient struct {
	entity *openpgp.Entity
	// Fingerprint identifies the primary key, upper-case hex.
	Fingerprint string
}

// ErrNoEncryptionSubkey is answered for a key whose only encryption key is
// its primary key, or that has none: customers rotate encryption subkeys
// under a long-lived primary, so Sluice encrypts to a subkey only.
var ErrNoEncryptionSubkey = errors.New("the key has no usable encryption subkey (a primary key alone is not accepted): add one, e.g. `gpg --quick-add-key <fingerprint> cv25519 encr`, and export the public key again")

// ParseRecipient reads one ASCII-armored public key and checks that it has a
// valid, unexpired, unrevoked encryption subkey.
func ParseRecipient(armored string) (*Recipient, error) {
	keys, err := openpgp.ReadArmoredKeyRing(strings.NewReader(armored))
	if err != nil {
		return nil, fmt.Errorf("not an ASCII-armored OpenPGP public key: %w", err)
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("want exactly one public key, got %d", len(keys))
	}
	e := keys[0]
	key, ok := e.EncryptionKey(time.Now())
	if !ok || key.PublicKey == e.PrimaryKey {
		return nil, ErrNoEncryptionSubkey
	}
	return &Recipient{entity: e, Fingerprint: fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)}, nil
}

// Encrypt answers a writer that encrypts what is written to it into w, as a
// binary OpenPGP message holding one file called name. Close finishes the
// message; it does not close w.
func (r *Recipient) Encrypt(w io.Writer, name string) (io.WriteCloser, error) {
	pt, err := openpgp.Encrypt(w, []*openpgp.Entity{r.entity}, nil,
		&openpgp.FileHints{IsBinary: true, FileName: name, ModTime: time.Now()},
		&packet.Config{DefaultCipher: packet.CipherAES256})
	if err != nil {
		return nil, fmt.Errorf("pgp: %w", err)
	}
	return pt, nil
}
