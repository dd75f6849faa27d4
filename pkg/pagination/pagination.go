// Package pagination implements AIP-158 paging: page sizes with a default
// and a maximum, and opaque page tokens that resume after the last key of a
// page and are refused when reused with a different request.
package pagination

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Page size bounds for every List.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// Size answers the page size to use, or an error for a negative one.
func Size(requested int32) (int, error) {
	switch {
	case requested < 0:
		return 0, errors.New("must not be negative")
	case requested == 0:
		return DefaultPageSize, nil
	case requested > MaxPageSize:
		return MaxPageSize, nil
	default:
		return int(requested), nil
	}
}

// token is what an opaque page token holds.
type token struct {
	// After is the sort key of the last item of the previous page.
	After string `json:"a"`
	// Request is a digest of the request's other fields (parent, filter), so
	// a token is not reused with a different query.
	Request string `json:"r"`
}

// Digest summarises the request fields a token is bound to.
func Digest(fields ...string) string {
	h := sha256.New()
	for _, f := range fields {
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

// Encode answers the token that resumes after key for the request digest.
func Encode(after, digest string) string {
	b, _ := json.Marshal(token{After: after, Request: digest})
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode answers the key to resume after, "" for the first page, or an
// error when the token is malformed or belongs to another request.
func Decode(pageToken, digest string) (string, error) {
	if pageToken == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(pageToken)
	if err != nil {
		return "", errors.New("is not a token this service issued")
	}
	var t token
	if err := json.Unmarshal(b, &t); err != nil {
		return "", errors.New("is not a token this service issued")
	}
	if t.Request != digest {
		return "", errors.New("belongs to a request with other parent or filter; send the same request with it")
	}
	return t.After, nil
}

// Seal encrypts a page token with key (AES-256-GCM), so that a caller
// learns nothing from it: not even the name of the last item it was given.
func Seal(key []byte, pageToken string) (string, error) {
	if pageToken == "" {
		return "", nil
	}
	aead, err := newAEAD(key)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(pageToken), nil)), nil
}

// Open answers the page token Seal sealed with key; an error for any
// other.
func Open(key []byte, sealed string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	aead, err := newAEAD(key)
	if err != nil {
		return "", err
	}
	b, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(b) < aead.NonceSize() {
		return "", errors.New("is not a token this service issued")
	}
	plain, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], nil)
	if err != nil {
		return "", errors.New("is not a token this service issued")
	}
	return string(plain), nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("page token key: %w", err)
	}
	return cipher.NewGCM(block)
}
