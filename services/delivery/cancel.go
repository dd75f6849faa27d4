package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/logging"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/staging"
	"github.com/sluicehq/sluice/services/delivery/store"
)

// runHandle is a run of this process, for CancelDelivery to stop.
type runHandle struct {
	cancel context.CancelCauseFunc
}

// cancelledBy is the cause a run is stopped with by CancelDelivery.
type cancelledBy struct {
	subject string
	keep    bool
}

func (c *cancelledBy) Error() string { return "cancelled by " + c.subject }

// error is the answer a cancelled delivery's caller gets, and what the
// delivery records.
func (c *cancelledBy) error(delivery string) *apierror.Error {
	who := c.subject
	if who == "" {
		who = "a caller"
	}
	return apierror.New(codes.Canceled, errorsv1.ErrorReason_ERROR_REASON_CANCELLED,
		fmt.Sprintf("the delivery was cancelled (CancelDelivery by %s); what it wrote was taken back", who)).With("delivery", delivery)
}

// cancelIfAsked stops a run whose cancel was asked (of this replica or
// another): checked as a resumed, taken-over or resolved run starts, and
// with every progress beat.
func (s *Service) cancelIfAsked(ctx context.Context, name string, cancel context.CancelCauseFunc) {
	r, err := s.store.CancelRequested(context.WithoutCancel(ctx), name)
	if err != nil {
		logging.FromContext(ctx).WarnContext(ctx, "look for a cancel", slog.String("error", err.Error()))
		return
	}
	if r != nil {
		logging.FromContext(ctx).InfoContext(ctx, "cancel asked: stopping the delivery", slog.String("by", r.Subject))
		cancel(&cancelledBy{subject: r.Subject, keep: r.KeepInput})
	}
}

// restartOnly is the action a cancelled delivery whose input is kept
// offers.
func restartOnly() []*deliveryv1.WorkflowAction {
	return []*deliveryv1.WorkflowAction{{Id: actionRestart, Kind: deliveryv1.ActionKind_ACTION_KIND_RESTART_WORKFLOW, Title: "Restart the workflow",
		Instructions: []string{"Sluice runs every step again from the data it kept, with the destination and credential as they are now."}}}

}

// cancelWait bounds how long CancelDelivery waits for a running delivery
// to stop before answering it as it is.
const cancelWait = 30 * time.Second

// CancelDelivery stops or discards a delivery: see the proto.
func (s *Service) CancelDelivery(ctx context.Context, req *deliveryv1.CancelDeliveryRequest) (*deliveryv1.Delivery, error) {
	if err := named(ctx, "name", req.GetName(), deliveries); err != nil {
		return nil, err
	}
	d, err := getVisible(ctx, s, s.store.Deliveries, req.GetName())
	if err != nil {
		return nil, err
	}
	if req.GetEtag() != "" && req.GetEtag() != d.GetEtag() {
		return nil, apierror.Wrap(apierror.ErrEtagMismatch, codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_ETAG_MISMATCH,
			"the delivery changed since it was read: get it again").With("delivery", d.GetName())
	}
	subject := ""
	if c, ok := auth.FromContext(ctx); ok {
		subject = c.Subject
	}
	by := &cancelledBy{subject: subject, keep: req.GetKeepInput()}
	switch at := phaseOf(d); at {
	case phaseSucceeded:
		return nil, apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
			"the delivery succeeded: there is nothing to cancel").With("delivery", d.GetName())
	case phaseCancelled:
		return d, nil
	case phaseCancelledKept:
		if req.GetKeepInput() {
			return d, nil
		}
		return s.discard(ctx, d, at, by)
	case phaseInterrupted, phaseFailed, phaseFailedKept:
		return s.discard(ctx, d, at, by)
	case phaseReceiving, phaseUploading, phaseResolving:
		return s.stopRun(ctx, d, by)
	}
	return nil, apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
		"the delivery is in a state this version does not know").With("delivery", d.GetName())
}

// stopRun asks a running delivery's holder to stop it, here at once or on
// another replica with its next progress beat (or whoever claims it
// next), and waits, within the caller's deadline and cancelWait, for it
// to settle.
func (s *Service) stopRun(ctx context.Context, d *deliveryv1.Delivery, by *cancelledBy) (*deliveryv1.Delivery, error) {
	name := d.GetName()
	if err := s.store.RequestCancel(ctx, name, store.CancelRequest{KeepInput: by.keep, Subject: by.subject}); err != nil {
		return nil, err
	}
	if h, ok := s.running.Load(name); ok {
		if rh, ok := h.(*runHandle); ok {
			rh.cancel(by)
		}
	}
	wait, cancel := context.WithTimeout(ctx, cancelWait)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := s.store.Deliveries.Get(ctx, name)
		if err != nil {
			return nil, err
		}
		if p := phaseOf(got); !shapes[p].running {
			if p != phaseCancelled && p != phaseCancelledKept {
				// It ended another way first: the request is moot.
				if err := s.store.ForgetCancel(ctx, name); err != nil {
					logging.FromContext(ctx).WarnContext(ctx, "forget a moot cancel", slog.String("error", err.Error()))
				}
			}
			return got, nil
		}
		select {
		case <-wait.Done():
			// Still stopping (a caller's stream stops at its next
			// message): GetDelivery or WatchDelivery shows it end.
			return got, nil
		case <-tick.C:
		}
	}
}

// discard cancels a delivery nobody runs: it takes back what the delivery
// left in the bucket, drops its kept input (unless keep, for one already
// cancelled with it), closes its workflow and acknowledges its
// notifications.
func (s *Service) discard(ctx context.Context, d *deliveryv1.Delivery, at phase, by *cancelledBy) (*deliveryv1.Delivery, error) {
	name := d.GetName()
	log := logging.FromContext(ctx)
	writes, err := s.store.Writes(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(writes) > 0 {
		a, err := s.accessTo(ctx, d.GetDestination())
		if err == nil {
			err = s.takeBack(ctx, name, a.dest, a.client(func() {}))
		}
		if err != nil {
			return nil, apierror.Wrap(err, codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE,
				"what the delivery left in the bucket could not be taken back; nothing was changed: try again").With("delivery", name)
		}
	}
	in := d.GetStagedInput()
	if in.GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD || in.GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED {
		in = &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED, Bytes: in.GetBytes()}
	}
	cause := d.GetError()
	if cause == nil {
		cause = recorded(by.error(name))
	}
	stored, _, err := s.move(ctx, name, []phase{at}, phaseCancelled, change{input: in, err: cause, workflow: cancelledRun(nil),
		also: []resourcestore.Also{s.store.ForgettingCancel(name)}})
	if wp, ok := isWrongPhase(err); ok {
		return nil, wp.refused()
	}
	if err != nil {
		return nil, err
	}
	if s.staging != nil {
		if err := s.staging.Delete(context.WithoutCancel(ctx), deliveryID(name)); err != nil && !errors.Is(err, staging.ErrNotFound) {
			log.WarnContext(ctx, "delete a discarded delivery's input", slog.String("error", err.Error()))
		}
	}
	s.acknowledgeAll(ctx, stored)
	log.InfoContext(ctx, "delivery discarded", slog.String("delivery", name), slog.String("was", at.String()), slog.String("by", by.subject))
	return stored, nil
}

// acknowledgeAll acknowledges the notifications a delivery raised: it
// needs no one's attention any more.
func (s *Service) acknowledgeAll(ctx context.Context, d *deliveryv1.Delivery) {
	ctx = context.WithoutCancel(ctx)
	parent := parentOf(d.GetName())
	after := ""
	for {
		page, next, err := s.store.Notifications.List(ctx, parent, after, 200,
			resourcestore.Where{Column: store.DestinationColumn, Value: d.GetDestination()},
			resourcestore.Where{Column: store.AcknowledgedColumn, Value: int32(0)})
		if err != nil {
			logging.FromContext(ctx).WarnContext(ctx, "acknowledge a discarded delivery's notifications", slog.String("error", err.Error()))
			return
		}
		for _, n := range page {
			if n.GetDelivery() != d.GetName() {
				continue
			}
			_, _ = s.store.Notifications.Update(ctx, n.GetName(), "", func(n *deliveryv1.Notification) error {
				n.Acknowledged, n.AcknowledgeTime = true, timestamppb.Now()
				return nil
			})
		}
		if next == "" {
			return
		}
		after = next
	}
}

// WatchDelivery streams a delivery as it changes: see the proto. It looks
// at most four times a second, and counts as one of the caller's streams.
func (s *Service) WatchDelivery(req *deliveryv1.WatchDeliveryRequest, stream deliveryv1.DeliveryService_WatchDeliveryServer) error {
	ctx := stream.Context()
	if err := named(ctx, "name", req.GetName(), deliveries); err != nil {
		return err
	}
	d, err := getVisible(ctx, s, s.store.Deliveries, req.GetName())
	if err != nil {
		return err
	}
	release, err := s.admission.admit(ctx)
	if err != nil {
		return err
	}
	defer release()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	sent := ""
	for {
		if d.GetEtag() != sent {
			if err := stream.Send(d); err != nil {
				return err
			}
			sent = d.GetEtag()
		}
		if p := phaseOf(d); !shapes[p].running && p != phaseInterrupted && !s.live(d.GetName()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if d, err = s.store.Deliveries.Get(ctx, req.GetName()); err != nil {
			if errors.Is(err, apierror.ErrNotFound) {
				return apierror.NotFound(req.GetName())
			}
			return err
		}
	}
}
