package delivery

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
)

// A destination's first success is recorded before add returns (a
// promotion may follow the delivery's answer); later ones in the
// background, one call at a time per destination, the successes that end
// meanwhile in one more call with the latest time, never an earlier one.
func TestSuccessesCoalescePerDestination(t *testing.T) {
	var (
		mu    sync.Mutex
		calls []*destinationv1.RecordDeliveryRequest
	)
	gate := make(chan struct{})
	first := true
	s := &successes{record: func(_ context.Context, req *destinationv1.RecordDeliveryRequest) error {
		mu.Lock()
		calls = append(calls, req)
		block := first && req.GetName() == "d1" && req.GetDelivery() == "x1"
		if block {
			first = false
		}
		mu.Unlock()
		if block {
			<-gate
		}
		return nil
	}}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(calls) }
	base := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	at := func(i int) *timestamppb.Timestamp { return timestamppb.New(base.Add(time.Duration(i) * time.Second)) }
	ctx := context.Background()

	fresh := &destinationv1.Destination{Name: "d0"}
	s.add(ctx, fresh, &destinationv1.RecordDeliveryRequest{Name: "d0", Delivery: "x0", DeliveryTime: at(0)})
	if count() != 1 {
		t.Fatalf("a destination's first success: %d calls when add returned, want 1", count())
	}

	used := &destinationv1.Destination{Name: "d1", LastSuccessfulDeliveryTime: at(0)}
	s.add(ctx, used, &destinationv1.RecordDeliveryRequest{Name: "d1", Delivery: "x1", DeliveryTime: at(1)})
	for count() < 2 {
		time.Sleep(time.Millisecond) // the first background call, held
	}
	for i := 2; i <= 10; i++ {
		s.add(ctx, used, &destinationv1.RecordDeliveryRequest{Name: "d1", Delivery: "x" + string(rune('0'+i%10)), DeliveryTime: at(i)})
	}
	// An older success arriving late does not replace the latest.
	s.add(ctx, used, &destinationv1.RecordDeliveryRequest{Name: "d1", Delivery: "late", DeliveryTime: at(5)})
	// Another destination is not held behind d1's call.
	other := &destinationv1.Destination{Name: "d2", LastSuccessfulDeliveryTime: at(0)}
	s.add(ctx, other, &destinationv1.RecordDeliveryRequest{Name: "d2", Delivery: "y", DeliveryTime: at(3)})
	for count() < 3 {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	s.wait()

	mu.Lock()
	defer mu.Unlock()
	var d1 []*destinationv1.RecordDeliveryRequest
	for _, c := range calls {
		if c.GetName() == "d1" {
			d1 = append(d1, c)
		}
	}
	if len(calls) != 4 || len(d1) != 2 {
		t.Fatalf("%d calls, %d for d1; want 4 and 2 (one held, one with what came meanwhile)", len(calls), len(d1))
	}
	if !d1[1].GetDeliveryTime().AsTime().Equal(at(10).AsTime()) {
		t.Errorf("d1's second call records %v, want the latest success %v", d1[1].GetDeliveryTime().AsTime(), at(10).AsTime())
	}
	if len(s.waiting) != 0 {
		t.Errorf("%d destinations still waiting after wait", len(s.waiting))
	}
}
