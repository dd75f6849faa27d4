//go:build unix

package multipart

import (
	"math"
	"runtime/debug"
	"syscall"
)

// allocate maps the pool's memory outside the Go heap. Held in the heap,
// the buffers would count as live data and the collector would let the
// heap grow to twice them before collecting (GOGC=100): a 128 MiB pool
// made a delivery service of 340 MiB. Mapped, the pool is its own size and
// the heap only what deliveries allocate. Pages are touched, and resident,
// as buffers are first used. The pool lives as long as the process.
//
// GOMEMLIMIT bounds only what Go's runtime manages, so a process under it
// (a container's limit less some room) grew past it by the pool: the
// runtime's limit is lowered by the pool's size (never below half of it),
// for GOMEMLIMIT to bound the process.
func allocate(n int) ([]byte, error) {
	mem, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, err
	}
	outsideLimit(int64(n))
	return mem, nil
}

// outsideLimit lowers the runtime's memory limit, when one is set, by n
// bytes the process holds outside it, never below half of it.
func outsideLimit(n int64) {
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		return // no limit set
	}
	debug.SetMemoryLimit(max(limit-n, limit/2))
}
