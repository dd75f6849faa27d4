package delivery

import (
	"context"
	"errors"
	"strings"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/lease"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/validate"
)

// visibleWorkflow answers a workflow and its delivery when the caller may
// see them (as for the delivery: when they may use its destination), and
// NotFound otherwise, exactly as for a workflow that does not exist.
func (s *Service) visibleWorkflow(ctx context.Context, name string) (*deliveryv1.Workflow, *deliveryv1.Delivery, error) {
	if err := workflowNamed(ctx, name); err != nil {
		return nil, nil, err
	}
	w, err := getVisible(ctx, s, s.store.Workflows, name)
	if err != nil {
		return nil, nil, err
	}
	d, err := s.store.Deliveries.Get(ctx, w.GetDelivery())
	if err != nil {
		return nil, nil, err
	}
	return w, d, nil
}

// GetWorkflow answers one workflow.
func (s *Service) GetWorkflow(ctx context.Context, req *deliveryv1.GetWorkflowRequest) (*deliveryv1.Workflow, error) {
	if err := workflowNamed(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return getVisible(ctx, s, s.store.Workflows, req.GetName())
}

// ListWorkflows answers a page of the workflows the caller may see, newest
// first.
func (s *Service) ListWorkflows(ctx context.Context, req *deliveryv1.ListWorkflowsRequest) (*deliveryv1.ListWorkflowsResponse, error) {
	items, next, err := listVisible(ctx, s, s.store.Workflows, req, workflowStateField, destinationField)
	if err != nil {
		return nil, err
	}
	return &deliveryv1.ListWorkflowsResponse{Workflows: items, NextPageToken: next}, nil
}

// ListNotifications answers a page of the notifications the caller may
// see, newest first.
func (s *Service) ListNotifications(ctx context.Context, req *deliveryv1.ListNotificationsRequest) (*deliveryv1.ListNotificationsResponse, error) {
	items, next, err := listVisible(ctx, s, s.store.Notifications, req, acknowledgedField, destinationField)
	if err != nil {
		return nil, err
	}
	return &deliveryv1.ListNotificationsResponse{Notifications: items, NextPageToken: next}, nil
}

// AcknowledgeNotification marks a notification seen; acknowledging it
// again changes nothing.
func (s *Service) AcknowledgeNotification(ctx context.Context, req *deliveryv1.AcknowledgeNotificationRequest) (*deliveryv1.Notification, error) {
	if err := named(ctx, "name", req.GetName(), notifications); err != nil {
		return nil, err
	}
	n, err := getVisible(ctx, s, s.store.Notifications, req.GetName())
	if err != nil {
		return nil, err
	}
	if n.GetAcknowledged() {
		return n, nil
	}
	return s.store.Notifications.Update(ctx, req.GetName(), "", func(n *deliveryv1.Notification) error {
		if !n.GetAcknowledged() {
			n.Acknowledged, n.AcknowledgeTime = true, timestamppb.Now()
		}
		return nil
	})
}

// ResolveWorkflow runs one of a failed workflow's actions: the delivery
// runs again from its staged input, with its destination and credential as
// they are now, writing the same keys. See the proto.
func (s *Service) ResolveWorkflow(ctx context.Context, req *deliveryv1.ResolveWorkflowRequest) (*deliveryv1.Delivery, error) {
	var v apierror.Violations
	validate.Required(&v, "action_id", req.GetActionId())
	if err := v.Err(); err != nil {
		return nil, err
	}
	w, d, err := s.visibleWorkflow(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if req.GetEtag() != "" && req.GetEtag() != w.GetEtag() {
		return nil, changed(w.GetName())
	}
	if w.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_FAILED && w.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_CANCELLED {
		return nil, apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
			"only a failed workflow can be resolved; this one is "+stateWord(w.GetState())).With("workflow", w.GetName())
	}
	if err := resolvable(d); err != nil {
		return nil, err
	}
	var action *deliveryv1.WorkflowAction
	var ids []string
	for _, a := range w.GetActions() {
		ids = append(ids, a.GetId())
		if a.GetId() == req.GetActionId() {
			action = a
		}
	}
	if action == nil {
		if len(ids) == 0 {
			return nil, apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
				"this workflow has no actions: send the data again").With("workflow", w.GetName())
		}
		v.Add("action_id", "is not one of this workflow's actions: %s", strings.Join(ids, ", "))
		return nil, v.Err()
	}
	// The destination as it is now, and the resolver's right to use it.
	dest, err := s.peers.Destinations.ResolveDestination(ctx, &destinationv1.ResolveDestinationRequest{Name: d.GetDestination()})
	if status.Code(err) == codes.NotFound {
		return nil, apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_DESTINATION_DELETED,
			"the delivery's destination was deleted: nothing can be resolved").With("destination", d.GetDestination())
	}
	if err != nil {
		return nil, err
	}
	subject := ""
	if c, ok := auth.FromContext(ctx); ok {
		subject = c.Subject
	}
	// The run is leased work, taken in the move that starts it: were this
	// replica to die, another takes it over once the lease runs out.
	work := deliveryWork(d.GetName(), kindResolve)
	work.Trace = traceParent(ctx)
	l := s.work.Take(work)
	d, _, err = s.move(ctx, d.GetName(), kept, phaseResolving, change{
		fresh: true, claim: true, workflowEtag: w.GetEtag(), workflow: startRun(action, subject), also: []resourcestore.Also{l.Hold},
	})
	if _, wrong := isWrongPhase(err); wrong || errors.Is(err, apierror.ErrEtagMismatch) || errors.Is(err, lease.ErrHeld) {
		return nil, changed(w.GetName())
	}
	if err != nil {
		return nil, err
	}
	// The run goes on when the caller leaves: the workflow shows how it
	// ends.
	run, h := s.holding(context.WithoutCancel(ctx), l)
	run, span := tracer().Start(run, "resolve workflow", trace.WithAttributes(attrDelivery.String(d.GetName()),
		attrAction.String(action.GetId()), attrRun.Int(len(w.GetHistory())+2)))
	type outcome struct {
		d   *deliveryv1.Delivery
		err error
	}
	done := make(chan outcome, 1)
	j := &job{entry: entryResolve, d: d, dest: dest, restart: action.GetId() == actionRestart}
	go func() {
		rd, err := s.execute(run, j)
		if errors.Is(err, errUnsettled) {
			h.again(s.cfg.RecoverInterval)
		} else {
			h.done()
		}
		if err != nil {
			span.SetStatus(otelcodes.Error, "the resolution's run failed")
		}
		span.End()
		done <- outcome{rd, err}
	}()
	select {
	case o := <-done:
		return o.d, o.err
	case <-ctx.Done():
		return nil, apierror.Wrap(ctx.Err(), codes.Canceled, errorsv1.ErrorReason_ERROR_REASON_CANCELLED,
			"the caller left; the resolution goes on, and GetWorkflow shows how it ends").With("workflow", w.GetName())
	}
}

// resolvable answers why a delivery cannot run again, if it cannot.
func resolvable(d *deliveryv1.Delivery) error {
	switch d.GetStagedInput().GetState() {
	case deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD:
		return nil
	case deliveryv1.StagedInputState_STAGED_INPUT_STATE_EXPIRED:
		return apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_STAGED_INPUT_EXPIRED,
			"the delivery's data was kept for the retention period and has expired: send it again").With("delivery", d.GetName())
	}
	return apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_NO_STAGED_INPUT,
		"the delivery's data was not kept, so it cannot run again without its caller: send it again").With("delivery", d.GetName())
}

func changed(workflow string) error {
	return apierror.Wrap(apierror.ErrEtagMismatch, codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_ETAG_MISMATCH,
		"the workflow changed since it was read (another resolution may have started): get it again").With("workflow", workflow)
}
