package delivery

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/pkg/lease"
)

// The kinds of work that outlive a request, each leased to one replica at
// a time (pkg/lease): a replica that dies loses its work within a lease's
// length to another, and one that was only slow is fenced off.
const (
	// kindDelivery is a delivery running, from its Deliver call (or a
	// resumed one) to its end.
	kindDelivery = "delivery"
	// kindResolve is a resolution's rerun from staged input.
	kindResolve = "resolve"
	// kindSweep is the sweeper's pass over destinations' prefixes.
	kindSweep = "sweep"
	// kindExpire is the pass that expires held input past its time.
	kindExpire = "expire"
)

// deliveryWork is the work of running a delivery: one row per delivery,
// whichever kind runs it.
func deliveryWork(delivery, kind string) lease.Work {
	return lease.Work{ID: "delivery:" + delivery, Kind: kind, Subject: delivery}
}

// holding answers ctx under l (fenced, cancelled when l is lost) and the
// held work, which ends with done or again.
func (s *Service) holding(ctx context.Context, l *lease.Lease) (context.Context, *held) {
	ctx, stop := l.Keep(ctx)
	return ctx, &held{l: l, stop: stop, log: s.log}
}

// held is leased work being run.
type held struct {
	l    *lease.Lease
	stop func()
	log  *slog.Logger
	once sync.Once
	// gone says the work's row went with the transaction that settled it
	// (lease.Ending): done then only stops the heartbeat.
	gone atomic.Bool
}

// done ends the work: its row goes, so that nobody takes it over.
func (h *held) done() {
	h.end(func(ctx context.Context) error {
		if h.gone.Load() {
			return nil
		}
		return h.l.Done(ctx)
	})
}

// again frees the work for any replica to claim after d: what this one
// could not finish.
func (h *held) again(d time.Duration) {
	h.end(func(ctx context.Context) error { return h.l.Again(ctx, d) })
}

func (h *held) end(fn func(context.Context) error) {
	h.once.Do(func() {
		h.stop()
		if err := fn(context.Background()); err != nil && !errors.Is(err, lease.ErrLost) {
			h.log.Warn("end leased work", slog.String("work", h.l.ID), slog.String("error", err.Error()))
		}
	})
}

// workLoop claims, every RecoverInterval, the work whose holder stopped
// keeping it (and, first, what this instance held when it stopped, in
// own), and runs each on its own goroutine, at most Workers at once. It
// ends with ctx.
func (s *Service) workLoop(ctx context.Context, own []*lease.Lease, wg *sync.WaitGroup) {
	slots := make(chan struct{}, s.cfg.Workers)
	run := func(l *lease.Lease) {
		if l.Kind == kindEvents {
			// The sender runs for as long as it holds its lease: it takes
			// no worker slot, which would leave one fewer for takeovers.
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.runWork(ctx, l)
			}()
			return
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			s.runWork(ctx, l)
		}()
	}
	// The first pass waits a moment for the peer services, which may be
	// starting beside this one.
	wait := time.Second
	added := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = s.cfg.RecoverInterval
		for _, l := range own {
			run(l)
		}
		own = nil
		if !added {
			added = s.work.Add(ctx, kindSweep, kindSweep) == nil && s.work.Add(ctx, kindExpire, kindExpire) == nil &&
				s.work.Add(ctx, kindEvents, kindEvents) == nil && s.work.AddAfter(ctx, kindHealth, kindHealth, s.healthEvery()) == nil
		}
		for ctx.Err() == nil && len(slots) < cap(slots) {
			l, err := s.work.Claim(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.WarnContext(ctx, "claim work", slog.String("error", err.Error()))
				}
				break
			}
			if l == nil {
				break
			}
			run(l)
		}
	}
}

// runWork runs one claimed work by its kind.
func (s *Service) runWork(ctx context.Context, l *lease.Lease) {
	log := s.log.With(slog.String("work", l.ID), slog.Int64("token", l.Token))
	switch l.Kind {
	case kindDelivery, kindResolve:
		s.takeOver(ctx, l, log)
	case kindSweep:
		s.periodic(ctx, l, s.cfg.SweepInterval, func(ctx context.Context) error {
			n, err := s.sweep(ctx, log)
			s.swept.Add(int64(n))
			s.metrics.sweptUploads.Add(ctx, int64(n))
			return err
		})
	case kindExpire:
		s.periodic(ctx, l, s.cfg.RecoverInterval, s.expirePass)
	case kindEvents:
		s.sendEvents(ctx, l, log)
	case kindHealth:
		if s.cfg.Health.Interval < 0 {
			_ = l.Again(ctx, time.Hour) // off on this replica; another may run it
			return
		}
		s.periodicEvery(ctx, l, s.healthEvery, s.healthPass)
	default:
		// Work of a kind a newer version added: left for a replica that
		// knows it.
		log.WarnContext(ctx, "work of an unknown kind", slog.String("kind", l.Kind))
		_ = l.Again(ctx, time.Minute)
	}
}

// periodic runs a periodic pass under its lease, then frees it until its
// next run, for whichever replica claims it then.
func (s *Service) periodic(ctx context.Context, l *lease.Lease, every time.Duration, pass func(context.Context) error) {
	s.periodicEvery(ctx, l, func() time.Duration { return every }, pass)
}

// periodicEvery is periodic with the pause answered by every, after the
// pass.
func (s *Service) periodicEvery(ctx context.Context, l *lease.Lease, every func() time.Duration, pass func(context.Context) error) {
	kept, stop := l.Keep(ctx)
	err := pass(kept)
	stop()
	if err != nil && kept.Err() == nil {
		s.log.WarnContext(ctx, "periodic work", slog.String("work", l.ID), slog.String("error", err.Error()))
	}
	if err := l.Again(ctx, every()); err != nil && !errors.Is(err, lease.ErrLost) {
		s.log.WarnContext(ctx, "free periodic work", slog.String("work", l.ID), slog.String("error", err.Error()))
	}
}

// claimOwn takes back, as the instance starts and before it serves, the
// work it held when it stopped: none of it can be running.
func (s *Service) claimOwn(ctx context.Context) []*lease.Lease {
	own, err := s.work.ClaimOwn(ctx)
	if err != nil {
		s.log.WarnContext(ctx, "take back this instance's work", slog.String("error", err.Error()))
	}
	return own
}
