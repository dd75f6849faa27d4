//go:build unix

package multipart

import "syscall"

// allocate maps the pool's memory outside the Go heap. Held in the heap,
// the buffers would count as live data and the collector would let the
// heap grow to twice them before collecting (GOGC=100): a 128 MiB pool
// made a delivery service of 340 MiB. Mapped, the pool is its own size and
// the heap only what deliveries allocate. Pages are touched, and resident,
// as buffers are first used. The pool lives as long as the process.
func allocate(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}
