// Package secretseal seals secrets at rest with envelope encryption: each
// secret gets a fresh AES-256-GCM data key, the data key is wrapped by a
// master key (a local key file or AWS KMS), and the resource name the secret
// belongs to is bound in as associated data, so a sealed secret copied to
// another row does not open.
package secretseal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// KeyWrapper wraps and unwraps data keys with a master key. The local key
// file and AWS KMS are its two implementations.
type KeyWrapper interface {
	// Kind names the wrapper in sealed records, e.g. `local` or `kms`.
	Kind() string
	// WrapKey encrypts a data key, binding context to it.
	WrapKey(ctx context.Context, dataKey []byte, context string) ([]byte, error)
	// UnwrapKey decrypts a wrapped data key with the same context.
	UnwrapKey(ctx context.Context, wrapped []byte, context string) ([]byte, error)
}

// ErrCannotOpen is returned for a record that does not open: tampered,
// copied to another resource, or sealed with another master key. It never
// says more, so that it reveals nothing about the secret.
var ErrCannotOpen = errors.New("sealed secret cannot be opened")

// Sealer seals and opens secrets.
type Sealer struct {
	kek KeyWrapper
}

// New answers a Sealer whose data keys kek wraps.
func New(kek KeyWrapper) *Sealer { return &Sealer{kek: kek} }

const version = 1

// Seal encrypts plaintext for the resource named resource. The record is
//
//	version(1) | len(kind)(1) | kind | len(wrapped)(2) | wrapped | nonce(12) | ciphertext+tag
func (s *Sealer) Seal(ctx context.Context, plaintext []byte, resource string) ([]byte, error) {
	dataKey := make([]byte, 32)
	if _, err := rand.Read(dataKey); err != nil {
		return nil, fmt.Errorf("seal: data key: %w", err)
	}
	wrapped, err := s.kek.WrapKey(ctx, dataKey, resource)
	if err != nil {
		return nil, fmt.Errorf("seal: wrap data key: %w", err)
	}
	aead, err := gcm(dataKey)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	kind := s.kek.Kind()
	out := make([]byte, 0, 4+len(kind)+len(wrapped)+len(nonce)+len(plaintext)+aead.Overhead())
	out = append(out, version, byte(len(kind)))
	out = append(out, kind...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(wrapped)))
	out = append(out, wrapped...)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plaintext, []byte(resource)), nil
}

// Open decrypts a record sealed for resource.
func (s *Sealer) Open(ctx context.Context, sealed []byte, resource string) ([]byte, error) {
	if len(sealed) < 2 || sealed[0] != version {
		return nil, ErrCannotOpen
	}
	n := int(sealed[1])
	rest := sealed[2:]
	if len(rest) < n+2 {
		return nil, ErrCannotOpen
	}
	if string(rest[:n]) != s.kek.Kind() {
		return nil, fmt.Errorf("%w: sealed with a %q master key, configured is %q", ErrCannotOpen, rest[:n], s.kek.Kind())
	}
	rest = rest[n:]
	wl := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < wl+12 {
		return nil, ErrCannotOpen
	}
	dataKey, err := s.kek.UnwrapKey(ctx, rest[:wl], resource)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCannotOpen, err)
	}
	rest = rest[wl:]
	aead, err := gcm(dataKey)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], []byte(resource))
	if err != nil {
		return nil, ErrCannotOpen
	}
	return plain, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}
