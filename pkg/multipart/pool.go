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
	"time"
)

// MinPartSize is S3's smallest part (but the last).
const MinPartSize = 5 << 20

// DefaultPartSize is the part size when none is configured.
const DefaultPartSize = 16 << 20

// Pool is a fixed set of part buffers shared by every upload of a process.
// An upload waits for buffers rather than allocating them, so the pool's
// size bounds the memory parts take, however many deliveries run and
// however large they are. A part of several buffers takes them all at
// once: no upload holds buffers while it waits for more, so uploads
// sharing a pool cannot deadlock.
type Pool struct {
	size int
	n    int

	mu      sync.Mutex
	free    [][]byte
	changed chan struct{} // closed and replaced whenever buffers return
	maxUsed int
	// held counts buffers out by owner (a tenant): no owner takes more
	// than half the pool, so that another always finds buffers (#22).
	held map[string]int
	// waited is the time uploads spent waiting for buffers, all together.
	waited time.Duration
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
	p := &Pool{size: size, n: n, changed: make(chan struct{}), held: map[string]int{}}
	mem, err := allocate(n * size)
	if err != nil {
		return nil, fmt.Errorf("multipart: allocate %d part buffers of %d bytes: %w", n, size, err)
	}
	for i := range n {
		p.free = append(p.free, mem[i*size:i*size:(i+1)*size])
	}
	return p, nil
}

// BufferSize answers the size of each buffer: the smallest part size.
func (p *Pool) BufferSize() int { return p.size }

// Cap answers how many buffers the pool holds.
func (p *Pool) Cap() int { return p.n }

// ownerShare answers how many buffers one owner may hold at once: half
// the pool, and at least a part's k.
func (p *Pool) ownerShare(k int) int { return max(k, p.n/2) }

// get waits until k buffers are free and owner holds few enough, or for
// ctx to end, and takes them.
func (p *Pool) get(ctx context.Context, owner string, k int) ([][]byte, error) {
	var since time.Time // when it started waiting
	for {
		p.mu.Lock()
		if len(p.free) >= k && p.held[owner]+k <= p.ownerShare(k) {
			if !since.IsZero() {
				p.waited += time.Since(since)
			}
			out := make([][]byte, k)
			for i := range out {
				out[i] = p.free[len(p.free)-1][:0]
				p.free = p.free[:len(p.free)-1]
			}
			p.held[owner] += k
			p.maxUsed = max(p.maxUsed, p.n-len(p.free))
			p.mu.Unlock()
			return out, nil
		}
		wait := p.changed
		p.mu.Unlock()
		if since.IsZero() {
			since = time.Now()
		}
		select {
		case <-wait:
		case <-ctx.Done():
			p.mu.Lock()
			p.waited += time.Since(since)
			p.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// put returns buffers owner took.
func (p *Pool) put(owner string, bufs ...[]byte) {
	if len(bufs) == 0 {
		return
	}
	p.mu.Lock()
	for _, b := range bufs {
		p.free = append(p.free, b[:0])
	}
	if p.held[owner] -= len(bufs); p.held[owner] <= 0 {
		delete(p.held, owner)
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// Waited answers the time uploads spent waiting for buffers, all
// together: where it grows, the pool is what holds deliveries back.
func (p *Pool) Waited() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waited
}

// InUse answers how many buffers are out now, and the most ever out at once.
func (p *Pool) InUse() (now, peak int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n - len(p.free), p.maxUsed
}
