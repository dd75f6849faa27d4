package credential

import (
	"crypto/rand"
)

// externalIDAlphabet is the part of the allowed External ID alphabet that
// survives copy and paste and shell quoting unchanged.
const externalIDAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// externalIDLength gives about 380 bits of randomness, far beyond guessing.
const externalIDLength = 64

// newExternalID draws an External ID from crypto/rand without modulo bias.
func newExternalID() (string, error) {
	out := make([]byte, 0, externalIDLength)
	buf := make([]byte, externalIDLength*2)
	for len(out) < externalIDLength {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			// 248 is the largest multiple of 62 below 256: reject above it.
			if b < 248 && len(out) < externalIDLength {
				out = append(out, externalIDAlphabet[int(b)%len(externalIDAlphabet)])
			}
		}
	}
	return string(out), nil
}
