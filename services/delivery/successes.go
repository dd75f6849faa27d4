package delivery

import (
	"context"
	"log/slog"
	"sync"
	"time"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/logging"
)

// successes records deliveries' successes on their destinations
// (last_successful_delivery_time) off the deliveries' answers, one call
// at a time per destination: successes that end while a call is on its
// way go in the next one, with the latest time. Sixteen small deliveries
// to one destination cost a call (and a write of the destination) or two
// rather than sixteen, and none waits for it.
type successes struct {
	record func(context.Context, *destinationv1.RecordDeliveryRequest) error

	mu      sync.Mutex
	waiting map[string]*waitingSuccess // by destination
	sending sync.WaitGroup
}

type waitingSuccess struct {
	ctx context.Context
	req *destinationv1.RecordDeliveryRequest
}

// recordTimeout bounds one call made after the delivery answered.
const recordTimeout = 30 * time.Second

// add records req: at once when the destination has no success yet, so
// that PromoteDestination (which asks for one) can follow the delivery's
// answer; otherwise in the background.
func (s *successes) add(ctx context.Context, dest *destinationv1.Destination, req *destinationv1.RecordDeliveryRequest) {
	ctx = context.WithoutCancel(ctx) // the trace and log fields go on; the caller's end does not cancel
	if dest.GetLastSuccessfulDeliveryTime() == nil {
		s.send(ctx, req)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting == nil {
		s.waiting = map[string]*waitingSuccess{}
	}
	if w, ok := s.waiting[req.GetName()]; ok {
		if w.req == nil || w.req.GetDeliveryTime().AsTime().Before(req.GetDeliveryTime().AsTime()) {
			w.ctx, w.req = ctx, req
		}
		return // the call on its way sends it next
	}
	s.waiting[req.GetName()] = &waitingSuccess{}
	s.sending.Add(1)
	go s.drain(ctx, req)
}

// drain sends req, then whatever arrived for its destination meanwhile,
// until nothing did.
func (s *successes) drain(ctx context.Context, req *destinationv1.RecordDeliveryRequest) {
	defer s.sending.Done()
	for {
		s.send(ctx, req)
		s.mu.Lock()
		w := s.waiting[req.GetName()]
		if w.req == nil {
			delete(s.waiting, req.GetName())
			s.mu.Unlock()
			return
		}
		ctx, req = w.ctx, w.req
		w.ctx, w.req = nil, nil
		s.mu.Unlock()
	}
}

func (s *successes) send(ctx context.Context, req *destinationv1.RecordDeliveryRequest) {
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	if err := s.record(ctx, req); err != nil {
		logging.FromContext(ctx).WarnContext(ctx, "record the successful delivery on its destination",
			slog.String("destination", req.GetName()), slog.String("delivery", req.GetDelivery()), slog.String("error", err.Error()))
	}
}

// wait waits for the calls on their way.
func (s *successes) wait() { s.sending.Wait() }
