// Package multipart writes one object to S3 as a stream: bytes are cut into
// parts held in buffers from a pool that all uploads of a process share (its
// size is the memory bound), up to N parts are sent at once, every part
// carries its CRC32C, and the object is completed with the whole object's
// CRC32C (ChecksumType FULL_OBJECT) so that S3 verifies both. An object
// smaller than one part goes up with a single PutObject carrying its
// checksum.
//
// The SDK's transfer manager is not used: it cannot take precomputed part
// checksums, share one buffer pool across uploads, or resume a recorded
// upload, which the delivery pipeline needs.
package multipart

import (
	"context"
	"fmt"
	"sync"
)

// MinPartSize is S3's smallest part (but the last).
const MinPartSize = 5 << 20

// DefaultPartSize is the part size when none is configured.
const DefaultPartSize = 16 << 20

// Pool is a fixed set of part buffers shared by every upload of a process.
// An upload waits for a buffer rather than allocating one, so the pool's
// size bounds the memory parts take, however many deliveries run and
// however large they are.
type Pool struct {
	size int
	free chan []byte

	mu      sync.Mutex
	inUse   int
	maxUsed int
}

// NewPool answers a pool of n buffers of size bytes each, allocated up
// front.
func NewPool(n, size int) (*Pool, error) {
	if size < MinPartSize {
		return nil, fmt.Errorf("multipart: part size %d is under S3's minimum of %d bytes", size, MinPartSize)
	}
	if n < 1 {
		return nil, fmt.Errorf("multipart: a pool needs at least one buffer")
	}
	p := &Pool{size: size, free: make(chan []byte, n)}
	for range n {
		p.free <- make([]byte, 0, size)
	}
	return p, nil
}

// BufferSize answers the size of each buffer: the part size.
func (p *Pool) BufferSize() int { return p.size }

// Cap answers how many buffers the pool holds.
func (p *Pool) Cap() int { return cap(p.free) }

// get waits for a free buffer or for ctx to end.
func (p *Pool) get(ctx context.Context) ([]byte, error) {
	select {
	case b := <-p.free:
		p.mu.Lock()
		p.inUse++
		p.maxUsed = max(p.maxUsed, p.inUse)
		p.mu.Unlock()
		return b[:0], nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put returns a buffer.
func (p *Pool) put(b []byte) {
	p.mu.Lock()
	p.inUse--
	p.mu.Unlock()
	p.free <- b[:0]
}

// InUse answers how many buffers are out now, and the most ever out at once.
func (p *Pool) InUse() (now, peak int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse, p.maxUsed
}
