package secretseal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LocalKey wraps data keys with a 256-bit master key kept in a file, for a
// single machine. Production uses KMS.
type LocalKey struct {
	key []byte
}

// LoadOrCreateLocalKey reads the base64 master key at path, creating it with
// mode 0600 when it does not exist.
func LoadOrCreateLocalKey(path string) (*LocalKey, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(key) != 32 {
			return nil, fmt.Errorf("master key %s: want 32 bytes of base64", path)
		}
		return &LocalKey{key: key}, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read master key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate master key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create master key directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // another process created it first
		return LoadOrCreateLocalKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("create master key: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("write master key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write master key: %w", err)
	}
	return &LocalKey{key: key}, nil
}

// Kind implements KeyWrapper.
func (*LocalKey) Kind() string { return "local" }

// WrapKey implements KeyWrapper with AES-256-GCM, context as associated data.
func (l *LocalKey) WrapKey(_ context.Context, dataKey []byte, context string) ([]byte, error) {
	aead, err := gcm(l.key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, dataKey, []byte(context)), nil
}

// UnwrapKey implements KeyWrapper.
func (l *LocalKey) UnwrapKey(_ context.Context, wrapped []byte, context string) ([]byte, error) {
	aead, err := gcm(l.key)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < aead.NonceSize() {
		return nil, errors.New("wrapped key too short")
	}
	key, err := aead.Open(nil, wrapped[:aead.NonceSize()], wrapped[aead.NonceSize():], []byte(context))
	if err != nil {
		return nil, errors.New("wrapped key does not open with this master key")
	}
	return key, nil
}
