package delivery

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/resourcestore"
)

// phase is where a delivery is in its life: its state and, where it
// decides what may happen next, whether its input is held.
type phase int

const (
	phaseReceiving     phase = iota + 1 // the stream arrives
	phaseInterrupted                    // the stream broke; the caller may resume it
	phaseUploading                      // the whole stream arrived; the last parts upload
	phaseResolving                      // a workflow action runs it again from its kept input
	phaseSucceeded                      // every object landed
	phaseFailedKept                     // failed, its input held for a resolution
	phaseFailed                         // failed, nothing held
	phaseCancelledKept                  // cancelled, its input held for a restart
	phaseCancelled                      // cancelled or discarded, nothing held

	// phaseSame, as a move's target, keeps the delivery where it is (a
	// running delivery storing its progress, or claimed by a replica).
	phaseSame phase = -1
)

// shape is what a phase stores: the delivery's state, the states its
// staged input may be in, and its workflow's state.
type shape struct {
	name     string
	state    deliveryv1.DeliveryState
	inputs   []deliveryv1.StagedInputState
	workflow deliveryv1.WorkflowState
	// running phases have a holder (a lease) and no end time.
	running bool
}

var (
	inputNone = []deliveryv1.StagedInputState{deliveryv1.StagedInputState_STAGED_INPUT_STATE_DISABLED,
		deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED, deliveryv1.StagedInputState_STAGED_INPUT_STATE_EXPIRED}
	inputHeld = []deliveryv1.StagedInputState{deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD}
	// A running delivery's input is being staged (RECEIVING), or not
	// staged at all (DISABLED).
	inputRunning = []deliveryv1.StagedInputState{deliveryv1.StagedInputState_STAGED_INPUT_STATE_DISABLED,
		deliveryv1.StagedInputState_STAGED_INPUT_STATE_RECEIVING}
)

var shapes = map[phase]shape{
	phaseReceiving:     {"receiving", deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING, inputRunning, deliveryv1.WorkflowState_WORKFLOW_STATE_RUNNING, true},
	phaseInterrupted:   {"interrupted", deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING, []deliveryv1.StagedInputState{deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED}, deliveryv1.WorkflowState_WORKFLOW_STATE_RUNNING, false},
	phaseUploading:     {"uploading", deliveryv1.DeliveryState_DELIVERY_STATE_UPLOADING, inputRunning, deliveryv1.WorkflowState_WORKFLOW_STATE_RUNNING, true},
	phaseResolving:     {"resolving", deliveryv1.DeliveryState_DELIVERY_STATE_RESOLVING, inputHeld, deliveryv1.WorkflowState_WORKFLOW_STATE_RESOLVING, true},
	phaseSucceeded:     {"succeeded", deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED, inputNone, deliveryv1.WorkflowState_WORKFLOW_STATE_SUCCEEDED, false},
	phaseFailedKept:    {"failed, input kept", deliveryv1.DeliveryState_DELIVERY_STATE_FAILED, inputHeld, deliveryv1.WorkflowState_WORKFLOW_STATE_FAILED, false},
	phaseFailed:        {"failed", deliveryv1.DeliveryState_DELIVERY_STATE_FAILED, inputNone, deliveryv1.WorkflowState_WORKFLOW_STATE_FAILED, false},
	phaseCancelledKept: {"cancelled, input kept", deliveryv1.DeliveryState_DELIVERY_STATE_CANCELLED, inputHeld, deliveryv1.WorkflowState_WORKFLOW_STATE_CANCELLED, false},
	phaseCancelled:     {"cancelled", deliveryv1.DeliveryState_DELIVERY_STATE_CANCELLED, inputNone, deliveryv1.WorkflowState_WORKFLOW_STATE_CANCELLED, false},
}

func (p phase) String() string { return shapes[p].name }

// phaseOf answers the phase a stored delivery is in; 0 for a state this
// version does not know.
func phaseOf(d *deliveryv1.Delivery) phase {
	for _, p := range phaseOrder {
		sh := shapes[p]
		if sh.state == d.GetState() && slices.Contains(sh.inputs, d.GetStagedInput().GetState()) {
			return p
		}
	}
	return 0
}

var phaseOrder = []phase{phaseReceiving, phaseInterrupted, phaseUploading, phaseResolving, phaseSucceeded,
	phaseFailedKept, phaseFailed, phaseCancelledKept, phaseCancelled}

// edge is one move the lifecycle allows, and what makes it.
type edge struct {
	from, to phase
	why      string
}

// lifecycle is every move a delivery may make; move refuses any other.
// The README's lifecycle table is rendered from it (TestLifecycleTable).
var lifecycle = []edge{
	{phaseReceiving, phaseReceiving, "progress is stored"},
	{phaseReceiving, phaseUploading, "the whole stream arrived"},
	{phaseReceiving, phaseInterrupted, "the stream broke or ended early and the delivery has an idempotency key; or its holder stopped"},
	{phaseReceiving, phaseFailedKept, "a failure that is not the data's (access, the bucket, S3), the whole stream kept"},
	{phaseReceiving, phaseFailed, "a data fault; a stream that broke without an idempotency key; nothing could be kept"},
	{phaseReceiving, phaseCancelled, "CancelDelivery (its input is not whole: nothing is kept)"},
	{phaseInterrupted, phaseReceiving, "the caller resumes the stream"},
	{phaseInterrupted, phaseFailed, "the resume window ends"},
	{phaseInterrupted, phaseCancelled, "CancelDelivery (its input is not whole: nothing is kept)"},
	{phaseUploading, phaseUploading, "progress is stored; a rerun after a transient fault; another replica takes it over"},
	{phaseUploading, phaseSucceeded, "every object landed"},
	{phaseUploading, phaseFailedKept, "a failure that is not the data's"},
	{phaseUploading, phaseFailed, "a value the format cannot carry; staging is off"},
	{phaseUploading, phaseCancelledKept, "CancelDelivery with keep_input"},
	{phaseUploading, phaseCancelled, "CancelDelivery"},
	{phaseResolving, phaseResolving, "progress is stored; another replica takes it over"},
	{phaseResolving, phaseSucceeded, "every object landed"},
	{phaseResolving, phaseFailedKept, "a failure that is not the data's; the kept input could not be read"},
	{phaseResolving, phaseFailed, "a value the format cannot carry; the kept input is gone"},
	{phaseResolving, phaseCancelledKept, "CancelDelivery with keep_input"},
	{phaseResolving, phaseCancelled, "CancelDelivery"},
	{phaseFailedKept, phaseResolving, "ResolveWorkflow"},
	{phaseFailedKept, phaseFailed, "the retention period ends"},
	{phaseFailedKept, phaseCancelled, "CancelDelivery discards it"},
	{phaseFailed, phaseCancelled, "CancelDelivery discards it"},
	{phaseCancelledKept, phaseResolving, "ResolveWorkflow (restart-workflow)"},
	{phaseCancelledKept, phaseCancelled, "the retention period ends; CancelDelivery discards it"},
}

func allowed(from, to phase) bool {
	return slices.ContainsFunc(lifecycle, func(e edge) bool { return e.from == from && e.to == to })
}

// Groups of phases moves start from.
var (
	running = []phase{phaseReceiving, phaseUploading, phaseResolving}
	// kept are the phases a resolution starts from.
	kept = []phase{phaseFailedKept, phaseCancelledKept}
)

// change is what a move stores beside the phase.
type change struct {
	// input is the staged input as it is now; nil leaves it.
	input *deliveryv1.StagedInput
	// progress, when set, replaces the stored progress.
	progress *deliveryv1.DeliveryProgress
	// staged, when set, is how much of an input being received is staged.
	staged *int64
	bucket string
	// objects are what landed, for a success.
	objects []*deliveryv1.DeliveredObject
	// err is why it failed, for a failed or cancelled phase.
	err *deliveryv1.DeliveryError
	// claim makes this instance the delivery's holder.
	claim bool
	// fresh starts another run: progress, objects, error and end time go.
	fresh bool
	// workflow records the move in the workflow, in the same
	// transaction, with workflowEtag checked when set.
	workflow     func(*deliveryv1.Workflow)
	workflowEtag string
	// also commits with the move (a lease taken, a notification raised).
	also []resourcestore.Also
}

// wrongPhase is a move refused because the delivery is not where the
// mover expected: another caller moved it first.
type wrongPhase struct {
	name     string
	at       phase
	expected []phase
}

func (e *wrongPhase) Error() string {
	var want []string
	for _, p := range e.expected {
		want = append(want, p.String())
	}
	return fmt.Sprintf("delivery %s is %s, not %s", e.name, e.at, strings.Join(want, " or "))
}

// refused answers the caller's error for a move another caller beat.
func (e *wrongPhase) refused() *apierror.Error {
	return apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
		"the delivery is "+e.at.String()+" now: get it again").With("delivery", e.name)
}

// move is the only writer of a delivery's state, its staged input and its
// workflow's state: it moves the delivery named name from one of the
// phases in from to the phase to, with c, in one transaction, and refuses
// a delivery in another phase (wrongPhase) and any move the lifecycle does
// not hold. The transaction runs under ctx, so a holder's move is fenced
// by its lease: a holder that lost it writes nothing.
func (s *Service) move(ctx context.Context, name string, from []phase, to phase, c change) (*deliveryv1.Delivery, *deliveryv1.Workflow, error) {
	ctx = context.WithoutCancel(ctx) // a move is stored even when its caller went
	if _, ok := shapes[to]; !ok && to != phaseSame {
		return nil, nil, fmt.Errorf("move %s to an unknown phase %d", name, to)
	}
	var (
		at      phase
		target  phase
		sh      shape
		written *deliveryv1.Workflow
		after   *deliveryv1.Delivery
		wrote   int
	)
	var record resourcestore.Also = func(ctx context.Context, tx *sql.Tx) error {
		if at == target && c.workflow == nil {
			return nil // the workflow stays as it is
		}
		return s.store.Workflows.Updating(name+workflowLeaf, c.workflowEtag, func(w *deliveryv1.Workflow) error {
			if c.workflow != nil {
				c.workflow(w)
			}
			w.State = sh.workflow
			return nil
		}, &written)(ctx, tx)
	}
	// The events the move causes commit with it (the outbox), so that none
	// is lost to a crash between the change and its sending.
	var outbox resourcestore.Also = func(ctx context.Context, tx *sql.Tx) (err error) {
		wrote, err = s.writeEvents(ctx, tx, at, target, after)
		return err
	}
	d, err := s.store.Deliveries.Update(ctx, name, "", func(d *deliveryv1.Delivery) error {
		after = d
		at = phaseOf(d)
		if !slices.Contains(from, at) {
			return &wrongPhase{name: name, at: at, expected: from}
		}
		target = to
		if to == phaseSame {
			target = at
		}
		sh = shapes[target]
		if !allowed(at, target) {
			return fmt.Errorf("move %s from %s to %s: not in the lifecycle", name, at, target)
		}
		d.State = sh.state
		if c.input != nil {
			d.StagedInput = c.input
		}
		if c.fresh {
			d.Progress, d.Objects, d.Error, d.EndTime = &deliveryv1.DeliveryProgress{}, nil, nil, nil
		}
		if c.progress != nil {
			d.Progress = c.progress
		}
		if in := d.GetStagedInput(); c.staged != nil && in.GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_RECEIVING {
			in.Bytes = *c.staged
		}
		if c.bucket != "" {
			d.Bucket = c.bucket
		}
		if c.claim {
			d.ServiceInstance = s.cfg.Instance
		}
		switch {
		case target == phaseSucceeded:
			d.Objects, d.Error = c.objects, nil
		case c.err != nil:
			d.Error = c.err
		case sh.running || target == phaseInterrupted:
			d.Error = nil
		}
		if sh.running || target == phaseInterrupted {
			d.EndTime = nil
		} else if at != target {
			d.EndTime = timestamppb.Now()
		}
		if got := phaseOf(d); got != target {
			return fmt.Errorf("move %s to %s: its staged input %s does not fit", name, target, d.GetStagedInput().GetState())
		}
		return nil
	}, append([]resourcestore.Also{record, outbox}, c.also...)...)
	if err != nil {
		return nil, nil, err
	}
	if wrote > 0 {
		s.wakeSender()
	}
	return d, written, nil
}

// isWrongPhase reports whether err is a move refused for the phase.
func isWrongPhase(err error) (*wrongPhase, bool) {
	var wp *wrongPhase
	return wp, errors.As(err, &wp)
}

// LifecycleTable renders the lifecycle as the README shows it: each
// phase with what it stores, then every move the lifecycle allows.
func LifecycleTable() string {
	var b strings.Builder
	b.WriteString("| phase | `state` | `staged_input.state` | workflow |\n|---|---|---|---|\n")
	word := func(s fmt.Stringer, prefix string) string { return "`" + strings.TrimPrefix(s.String(), prefix) + "`" }
	for _, p := range phaseOrder {
		sh := shapes[p]
		var inputs []string
		for _, in := range sh.inputs {
			inputs = append(inputs, word(in, "STAGED_INPUT_STATE_"))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", p, word(sh.state, "DELIVERY_STATE_"), strings.Join(inputs, ", "), word(sh.workflow, "WORKFLOW_STATE_"))
	}
	b.WriteString("\n| from | to | when |\n|---|---|---|\n")
	for _, e := range lifecycle {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", e.from, e.to, e.why)
	}
	return b.String()
}
