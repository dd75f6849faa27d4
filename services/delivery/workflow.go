package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/awserror"
	"github.com/sluicehq/sluice/pkg/logging"
	"github.com/sluicehq/sluice/pkg/resourcename"
)

// The steps of a delivery's workflow, in order. Convert and upload run
// together, since output is uploaded while the stream still arrives:
// convert ends when the whole stream was read, upload when every data
// object has landed, and finish writes the manifest and the success file.
const (
	stepGetAccess        = "get_access"
	stepCheckDestination = "check_destination"
	stepConvert          = "convert"
	stepUpload           = "upload"
	stepFinish           = "finish"
)

var stepOrder = []string{stepGetAccess, stepCheckDestination, stepConvert, stepUpload, stepFinish}

// stepError says which step of the workflow an error belongs to.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// inStep marks err as a failure of step; nil stays nil.
func inStep(step string, err error) error {
	if err == nil {
		return nil
	}
	var already *stepError
	if errors.As(err, &already) {
		return err
	}
	return &stepError{step: step, err: err}
}

// stepOf answers the step a failure belongs to: the one it was marked
// with, else upload for S3's answers, else convert (the stream, the data,
// staging).
func stepOf(err error) string {
	var se *stepError
	if errors.As(err, &se) {
		return se.step
	}
	if awserror.FromAWS(err) {
		return stepUpload
	}
	return stepConvert
}

// newWorkflow answers the workflow a new delivery starts with.
func newWorkflow(d *deliveryv1.Delivery) *deliveryv1.Workflow {
	w := &deliveryv1.Workflow{Name: d.GetName() + workflowLeaf, Delivery: d.GetName(), Destination: d.GetDestination(),
		State: deliveryv1.WorkflowState_WORKFLOW_STATE_RUNNING, CurrentRun: &deliveryv1.WorkflowRun{Run: 1, StartTime: d.GetCreateTime()}}
	w.Steps = pendingSteps()
	return w
}

func pendingSteps() []*deliveryv1.WorkflowStep {
	steps := make([]*deliveryv1.WorkflowStep, len(stepOrder))
	for i, name := range stepOrder {
		steps[i] = &deliveryv1.WorkflowStep{Step: name, State: deliveryv1.StepState_STEP_STATE_PENDING}
	}
	return steps
}

func stepIn(w *deliveryv1.Workflow, name string) *deliveryv1.WorkflowStep {
	for _, st := range w.GetSteps() {
		if st.GetStep() == name {
			return st
		}
	}
	st := &deliveryv1.WorkflowStep{Step: name, State: deliveryv1.StepState_STEP_STATE_PENDING}
	w.Steps = append(w.Steps, st)
	return st
}

// flow records a delivery's run in its workflow as its steps start, retry
// and end. What it cannot store is logged: the delivery itself goes on.
type flow struct {
	s    *Service
	name string
	// spans are the steps' spans of the run this flow records, open from
	// their start to their end.
	mu    sync.Mutex
	spans map[string]trace.Span

	// Step changes are stored together, stepFlush after the first one
	// not yet stored and once more when the run settles, rather than one
	// transaction each: a small delivery made ten (#26). flushMu orders
	// the writes, so that a later change never lands before an earlier.
	pmu     sync.Mutex
	pending []func(*deliveryv1.Workflow)
	timer   *time.Timer
	settled bool
	flushMu sync.Mutex
}

// stepFlush is how late a running delivery's workflow may show a step's
// change.
const stepFlush = 250 * time.Millisecond

func (s *Service) flowOf(delivery string) *flow {
	return &flow{s: s, name: delivery + workflowLeaf, spans: map[string]trace.Span{}}
}

// startSpans opens a span per step under ctx's span, ending one of an
// earlier attempt.
func (f *flow) startSpans(ctx context.Context, steps []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, name := range steps {
		if sp := f.spans[name]; sp != nil {
			sp.End()
		}
		_, f.spans[name] = tracer().Start(ctx, "step "+name, trace.WithAttributes(attrStep.String(name)))
	}
}

// endSpans ends the steps' spans that are open: failing with err (when
// not nil), the others as they are.
func (f *flow) endSpans(failing string, err error, steps ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, sp := range f.spans {
		if len(steps) > 0 && !slices.Contains(steps, name) {
			continue
		}
		if err != nil && name == failing {
			sp.SetStatus(otelcodes.Error, err.Error())
		}
		sp.End()
		delete(f.spans, name)
	}
}

func (f *flow) update(ctx context.Context, what string, mutate func(w *deliveryv1.Workflow)) {
	f.pmu.Lock()
	f.pending = append(f.pending, mutate)
	if f.settled {
		f.pmu.Unlock()
		f.flush(ctx, what) // after the run settled: at once
		return
	}
	if f.timer == nil {
		ctx := context.WithoutCancel(ctx)
		f.timer = time.AfterFunc(stepFlush, func() { f.flush(ctx, what) })
	}
	f.pmu.Unlock()
}

// flush stores the step changes not yet stored, in one transaction.
func (f *flow) flush(ctx context.Context, what string) {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.pmu.Lock()
	pending := f.take()
	f.pmu.Unlock()
	f.write(ctx, what, pending)
}

// settle answers the step changes not yet stored (nil: none), as one
// change for the move that stores the run's outcome (after any flush in
// flight); later changes are stored at once.
func (f *flow) settle() func(*deliveryv1.Workflow) {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.pmu.Lock()
	defer f.pmu.Unlock()
	f.settled = true
	return f.take()
}

// take answers the step changes not yet stored as one (nil: none), and
// stops the timer. Called with pmu held.
func (f *flow) take() func(*deliveryv1.Workflow) {
	pending := f.pending
	f.pending = nil
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
	if len(pending) == 0 {
		return nil
	}
	return func(w *deliveryv1.Workflow) {
		for _, m := range pending {
			m(w)
		}
	}
}

// store writes changes settle answered (nil: none), in order with any
// change after them.
func (f *flow) store(ctx context.Context, what string, changes func(*deliveryv1.Workflow)) {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.write(ctx, what, changes)
}

// write writes changes (nil: none) to the workflow. Called with flushMu
// held.
func (f *flow) write(ctx context.Context, what string, changes func(*deliveryv1.Workflow)) {
	if changes == nil {
		return
	}
	_, err := f.s.store.Workflows.Update(context.WithoutCancel(ctx), f.name, "", func(w *deliveryv1.Workflow) error {
		changes(w)
		return nil
	})
	if err != nil {
		logging.FromContext(ctx).WarnContext(ctx, "store the workflow's "+what, slog.String("workflow", f.name), slog.String("error", err.Error()))
	}
}

// start marks a step running; each start is one attempt.
func (f *flow) start(ctx context.Context, steps ...string) {
	f.update(ctx, "step start", func(w *deliveryv1.Workflow) {
		for _, name := range steps {
			st := stepIn(w, name)
			st.State, st.StartTime, st.EndTime, st.Error = deliveryv1.StepState_STEP_STATE_RUNNING, timestamppb.Now(), nil, nil
			st.Attempts++
		}
	})
	f.startSpans(ctx, steps)
}

// succeed marks steps done.
func (f *flow) succeed(ctx context.Context, steps ...string) {
	f.update(ctx, "step end", func(w *deliveryv1.Workflow) {
		for _, name := range steps {
			st := stepIn(w, name)
			st.State, st.EndTime, st.Error = deliveryv1.StepState_STEP_STATE_SUCCEEDED, timestamppb.Now(), nil
		}
	})
	f.endSpans("", nil, steps...)
}

// retried counts n more attempts of a step (a part or a request tried
// again, without running the step again).
func (f *flow) retried(ctx context.Context, step string, n int32) {
	f.update(ctx, "attempts", func(w *deliveryv1.Workflow) {
		stepIn(w, step).Attempts += n
	})
	f.mu.Lock()
	if sp := f.spans[step]; sp != nil {
		sp.AddEvent("requests tried again", trace.WithAttributes(attribute.Int("sluice.retries", int(n))))
	}
	f.mu.Unlock()
}

// succeededRun ends the workflow's run: every step done, for the move
// that ends its delivery SUCCEEDED.
func succeededRun(w *deliveryv1.Workflow) {
	now := timestamppb.Now()
	for _, st := range w.GetSteps() {
		if st.GetState() != deliveryv1.StepState_STEP_STATE_SUCCEEDED {
			st.State, st.EndTime = deliveryv1.StepState_STEP_STATE_SUCCEEDED, now
		}
	}
	w.Actions = nil
}

// failedRun ends the workflow's run with step failed for good, for the
// move that fails its delivery: later steps (and those cut short beside
// it) are SKIPPED, and the actions say how to resolve it. A cause that is
// still there after a resolution says so.
func failedRun(step string, cause *deliveryv1.DeliveryError, actions []*deliveryv1.WorkflowAction) func(*deliveryv1.Workflow) {
	return func(w *deliveryv1.Workflow) {
		now := timestamppb.Now()
		cause := proto.Clone(cause).(*deliveryv1.DeliveryError)
		if n := len(w.GetHistory()); n > 0 {
			if prev := failedStep(w.GetHistory()[n-1].GetSteps()); prev != nil && prev.GetError().GetReason() == cause.GetReason() {
				cause.Message = "The cause is still there after the resolution: " + cause.GetMessage()
			}
		}
		for _, st := range w.GetSteps() {
			switch {
			case st.GetStep() == step:
				st.State, st.EndTime, st.Error = deliveryv1.StepState_STEP_STATE_FAILED, now, cause
				if st.StartTime == nil {
					st.StartTime = now
				}
				if st.Attempts == 0 {
					st.Attempts = 1
				}
			case st.GetState() == deliveryv1.StepState_STEP_STATE_RUNNING || st.GetState() == deliveryv1.StepState_STEP_STATE_PENDING:
				st.State = deliveryv1.StepState_STEP_STATE_SKIPPED
				if st.StartTime != nil {
					st.EndTime = now
				}
			}
		}
		w.Actions = actions
	}
}

// expiredRun takes a workflow's actions away once its delivery's kept
// input expired, saying why in its failed step.
func expiredRun(cause *deliveryv1.DeliveryError) func(*deliveryv1.Workflow) {
	return func(w *deliveryv1.Workflow) {
		w.Actions = nil
		if st := failedStep(w.GetSteps()); st != nil && st.GetError() != nil && cause != nil {
			st.Error.Message = cause.GetMessage()
		}
	}
}

// cancelledRun ends the workflow's run of a cancelled delivery: steps
// not done are SKIPPED; actions stay only to restart from a kept input.
func cancelledRun(actions []*deliveryv1.WorkflowAction) func(*deliveryv1.Workflow) {
	return func(w *deliveryv1.Workflow) {
		now := timestamppb.Now()
		for _, st := range w.GetSteps() {
			if st.GetState() == deliveryv1.StepState_STEP_STATE_RUNNING || st.GetState() == deliveryv1.StepState_STEP_STATE_PENDING {
				st.State = deliveryv1.StepState_STEP_STATE_SKIPPED
				if st.StartTime != nil {
					st.EndTime = now
				}
			}
		}
		w.Actions = actions
	}
}

func failedStep(steps []*deliveryv1.WorkflowStep) *deliveryv1.WorkflowStep {
	for _, st := range steps {
		if st.GetState() == deliveryv1.StepState_STEP_STATE_FAILED {
			return st
		}
	}
	return nil
}

// notificationOf answers the notification a failed delivery raises; nil
// for a name that does not parse.
func (s *Service) notificationOf(d *deliveryv1.Delivery, cause *deliveryv1.DeliveryError, actions bool) *deliveryv1.Notification {
	n, err := resourcename.Parse(d.GetName(), deliveries)
	if err != nil {
		return nil
	}
	dest := d.GetDestination()
	if dn, err := resourcename.Parse(dest, "destinations"); err == nil {
		dest = dn.ID
	}
	reason := apierror.ParseReason(cause.GetReason())
	title := fmt.Sprintf("Delivery to %s failed: %s", dest, plainReason(reason))
	msg := cause.GetMessage()
	workflow := d.GetName() + workflowLeaf
	if actions {
		msg += ". Open the workflow to see how to resolve it: " + workflow
	}
	parent := n.Parent.String()
	return &deliveryv1.Notification{
		Name: parent + "/" + notifications + "/" + newID(time.Now()), Severity: deliveryv1.Severity_SEVERITY_ERROR,
		Title: title, Message: msg, Workflow: workflow, Delivery: d.GetName(), Destination: d.GetDestination(),
		Reason: cause.GetReason(),
	}
}

// parentOf answers the parent of a resource name: all before its last
// two segments.
func parentOf(name string) string {
	parts := strings.Split(name, "/")
	if len(parts) < 2 {
		return ""
	}
	return strings.Join(parts[:len(parts)-2], "/")
}

// plainReason says a reason in words for a title.
func plainReason(r errorsv1.ErrorReason) string {
	switch r {
	case errorsv1.ErrorReason_ERROR_REASON_INVALID_BUCKET_NAME:
		return "the bucket name is not valid"
	case errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND:
		return "the bucket does not exist"
	case errorsv1.ErrorReason_ERROR_REASON_INVALID_CREDENTIALS:
		return "the credentials are not valid"
	case errorsv1.ErrorReason_ERROR_REASON_ACCESS_DENIED:
		return "a permission is missing"
	case errorsv1.ErrorReason_ERROR_REASON_ROLE_NOT_ASSUMABLE:
		return "Sluice cannot assume the role"
	case errorsv1.ErrorReason_ERROR_REASON_KMS_KEY_NOT_USABLE:
		return "the KMS key cannot be used"
	case errorsv1.ErrorReason_ERROR_REASON_REGION_MISMATCH:
		return "the bucket is in another region"
	case errorsv1.ErrorReason_ERROR_REASON_TRANSIENT, errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE:
		return "S3 or a service kept failing after retries"
	case errorsv1.ErrorReason_ERROR_REASON_STREAM_ENDED_EARLY:
		return "the data stopped arriving"
	case errorsv1.ErrorReason_ERROR_REASON_INVALID_ARROW_STREAM:
		return "the data is not a valid Arrow stream"
	case errorsv1.ErrorReason_ERROR_REASON_SCHEMA_NOT_SUPPORTED:
		return "the file format cannot carry a column"
	case errorsv1.ErrorReason_ERROR_REASON_DESTINATION_DELETED:
		return "the destination was deleted"
	case errorsv1.ErrorReason_ERROR_REASON_CREDENTIAL_DELETED:
		return "the credential was deleted"
	case errorsv1.ErrorReason_ERROR_REASON_PGP_KEY_NOT_USABLE:
		return "the PGP key cannot encrypt"
	}
	return strings.ToLower(strings.ReplaceAll(apierror.ReasonName(r), "_", " "))
}

// startRun moves the workflow's current run into its history and starts
// the next for an action, for the move that starts a resolution.
func startRun(action *deliveryv1.WorkflowAction, subject string) func(*deliveryv1.Workflow) {
	return func(w *deliveryv1.Workflow) {
		past := proto.Clone(w.GetCurrentRun()).(*deliveryv1.WorkflowRun)
		if past.GetRun() == 0 {
			past.Run = 1
		}
		past.State, past.Steps, past.EndTime = w.GetState(), w.GetSteps(), w.GetUpdateTime()
		if past.StartTime == nil {
			past.StartTime = runStart(w)
		}
		w.History = append(w.History, past)
		w.CurrentRun = &deliveryv1.WorkflowRun{Run: past.GetRun() + 1, ActionId: action.GetId(), ActionKind: action.GetKind(), Subject: subject, StartTime: timestamppb.Now()}
		w.Steps, w.Actions = pendingSteps(), nil
	}
}

func runStart(w *deliveryv1.Workflow) *timestamppb.Timestamp {
	var first *timestamppb.Timestamp
	for _, st := range w.GetSteps() {
		if t := st.GetStartTime(); t != nil && (first == nil || t.AsTime().Before(first.AsTime())) {
			first = t
		}
	}
	if first == nil {
		return w.GetCreateTime()
	}
	return first
}

func stateWord(s deliveryv1.WorkflowState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "WORKFLOW_STATE_"))
}
