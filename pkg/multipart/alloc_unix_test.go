//go:build unix

package multipart

import (
	"math"
	"runtime/debug"
	"testing"
)

// The pool is mapped outside what GOMEMLIMIT bounds: the runtime's limit
// is lowered by its size, so that the process stays under GOMEMLIMIT.
func TestPoolCountsAgainstTheMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, c := range []struct {
		name        string
		limit, want int64
	}{
		{"under a limit", 1 << 30, 1<<30 - 4*MinPartSize},
		{"never below half of it", 30 << 20, 15 << 20},
		{"no limit", math.MaxInt64, math.MaxInt64},
	} {
		debug.SetMemoryLimit(c.limit)
		if _, err := NewPool(4, MinPartSize); err != nil {
			t.Fatal(err)
		}
		if got := debug.SetMemoryLimit(-1); got != c.want {
			t.Errorf("%s: the runtime's limit is %d after a pool of %d bytes, want %d", c.name, got, 4*MinPartSize, c.want)
		}
	}
}
