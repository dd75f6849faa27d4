package multipart

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Waited counts the time an upload spent blocked on the pool, and only
// that: taking a free buffer adds nothing.
func TestPoolCountsItsWaits(t *testing.T) {
	p, err := NewPool(1, MinPartSize)
	if err != nil {
		t.Fatal(err)
	}
	held, err := p.get(context.Background(), "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if p.Waited() != 0 {
		t.Fatalf("a free buffer taken counts %v of waiting", p.Waited())
	}
	// The pool is empty: a get waits until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.get(ctx, "b", 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get from an empty pool: %v", err)
	}
	if p.Waited() < 10*time.Millisecond { // most of the 20 ms it blocked
		t.Fatalf("a get blocked until its deadline counts %v of waiting", p.Waited())
	}
	p.put("a", held...)
}
