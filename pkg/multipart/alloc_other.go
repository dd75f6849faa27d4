//go:build !unix

package multipart

// allocate takes the pool's memory from the Go heap where mapping it is
// not available.
func allocate(n int) ([]byte, error) { return make([]byte, n), nil }
