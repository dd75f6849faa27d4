package delivery

import (
	"context"
	"testing"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
)

// Access minted beside storing a delivery is taken once, by a run for
// the same credential; a run for another (the destination changed
// between) mints its own; a run whose caller went does not wait for it.
func TestPremintedIsTakenOnce(t *testing.T) {
	p := &preminted{credential: "c1", done: make(chan struct{}), access: &credentialv1.TemporaryAccess{Bucket: "b"}}
	close(p.done)
	ctx := context.Background()
	if a, err := p.take(ctx, "c2"); a != nil || err != nil {
		t.Fatalf("another credential took %v, %v", a, err)
	}
	if a, err := p.take(ctx, "c1"); err != nil || a.GetBucket() != "b" {
		t.Fatalf("the first take answered %v, %v", a, err)
	}
	if a, err := p.take(ctx, "c1"); a != nil || err != nil {
		t.Fatalf("a second take answered %v, %v: it must mint afresh", a, err)
	}
	var none *preminted
	if a, err := none.take(ctx, "c1"); a != nil || err != nil {
		t.Fatalf("no premint answered %v, %v", a, err)
	}
	slow := &preminted{credential: "c1", done: make(chan struct{})}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := slow.take(gone, "c1"); err == nil {
		t.Fatal("a run whose caller went waited for the mint")
	}
}
