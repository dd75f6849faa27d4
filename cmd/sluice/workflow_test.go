package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/awsclient"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// workflows is a delivering environment with the workflow API at hand.
type workflows struct {
	*delivering
	flows deliveryv1.WorkflowServiceClient
	creds credentialv1.CredentialServiceClient
}

func startWorkflows(t *testing.T, adjust func(*serveConfig)) *workflows {
	t.Helper()
	return startWorkflowsOn(t, testenv.SharedMinIO(t), adjust)
}

func startWorkflowsOn(t *testing.T, m *testenv.MinIO, adjust func(*serveConfig)) *workflows {
	t.Helper()
	e := startDeliveringOn(t, m, adjust)
	return &workflows{delivering: e, flows: deliveryv1.NewWorkflowServiceClient(e.r.conns["delivery"]),
		creds: credentialv1.NewCredentialServiceClient(e.r.conns["credential"])}
}

// mayUseAnyBucket lets the credential's MinIO user reach any bucket, so
// that MinIO answers a misspelled bucket with NoSuchBucket, as S3 does,
// rather than with AccessDenied for a bucket outside the user's policy.
func (w *workflows) mayUseAnyBucket(t *testing.T) {
	t.Helper()
	if err := testenv.SetMinIOUser(context.Background(), w.m, w.key, w.secret,
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}`); err != nil {
		t.Fatal(err)
	}
}

// failedDelivery delivers rows to dest, expects the delivery to fail with
// reason, and answers the failed delivery as GetDelivery shows it.
func (w *workflows) failedDelivery(t *testing.T, dest string, stream []byte, reason errorsv1.ErrorReason) *deliveryv1.Delivery {
	t.Helper()
	ctx := context.Background()
	_, err := deliverclient.DeliverStream(ctx, w.delivs, &deliveryv1.DeliveryStart{Destination: dest, OutputName: "out"}, bytes.NewReader(stream),
		deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}})
	e := apierror.FromStatus(err)
	if e == nil || e.Reason != reason {
		t.Fatalf("delivery to %s: %v, want %s", dest, err, apierror.ReasonName(reason))
	}
	d, err := w.delivs.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Name: e.Metadata["delivery"]}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	if d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_FAILED || d.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD {
		t.Fatalf("failed delivery: %v", d)
	}
	return d
}

func (w *workflows) workflow(t *testing.T, name string) *deliveryv1.Workflow {
	t.Helper()
	wf, err := w.flows.GetWorkflow(context.Background(), &deliveryv1.GetWorkflowRequest{Name: name}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	return wf
}

// checkFailed checks a failed workflow: every step before failing
// succeeded, failing failed with reason, the later ones were skipped, and
// the actions are the cause's own (if any) and then the common two.
func checkFailed(t *testing.T, wf *deliveryv1.Workflow, failing string, reason errorsv1.ErrorReason, own string) {
	t.Helper()
	if wf.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_FAILED {
		t.Fatalf("workflow %s, want FAILED: %v", wf.GetState(), wf)
	}
	var names []string
	before := true
	for _, st := range wf.GetSteps() {
		names = append(names, st.GetStep())
		switch {
		case st.GetStep() == failing:
			before = false
			if st.GetState() != deliveryv1.StepState_STEP_STATE_FAILED || st.GetError().GetReason() != apierror.ReasonName(reason) || st.GetError().GetMessage() == "" || st.GetAttempts() < 1 || st.GetEndTime() == nil {
				t.Errorf("failing step %s: %v", failing, st)
			}
		case before && failing != "upload" || before && st.GetStep() != "convert":
			if st.GetState() != deliveryv1.StepState_STEP_STATE_SUCCEEDED || st.GetAttempts() < 1 || st.GetStartTime() == nil || st.GetEndTime() == nil {
				t.Errorf("step %s before the failing %s: %v", st.GetStep(), failing, st)
			}
		case !before:
			if st.GetState() != deliveryv1.StepState_STEP_STATE_SKIPPED {
				t.Errorf("step %s after the failing %s: %v", st.GetStep(), failing, st)
			}
		}
	}
	if want := []string{"get_access", "check_destination", "convert", "upload", "finish"}; !slices.Equal(names, want) {
		t.Errorf("steps %v, want %v", names, want)
	}
	var ids []string
	for _, a := range wf.GetActions() {
		ids = append(ids, a.GetId())
		if a.GetTitle() == "" || len(a.GetInstructions()) == 0 {
			t.Errorf("action %s has no title or no instructions: %v", a.GetId(), a)
		}
	}
	want := []string{"retry-task", "restart-workflow"}
	if own != "" {
		want = append([]string{own}, want...)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("actions %v, want %v", ids, want)
	}
}

func (w *workflows) resolve(ctx context.Context, wf *deliveryv1.Workflow, action string) (*deliveryv1.Delivery, error) {
	return w.flows.ResolveWorkflow(ctx, &deliveryv1.ResolveWorkflowRequest{Name: wf.GetName(), ActionId: action, Etag: wf.GetEtag()}, w.admin)
}

// checkLanded reads a delivery's CSV objects back and compares their ids
// with those sent.
func (w *workflows) checkLanded(t *testing.T, d *deliveryv1.Delivery, wantIDs []string) {
	t.Helper()
	if d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED {
		t.Fatalf("delivery %s: %v", d.GetState(), d)
	}
	var ids []string
	for _, obj := range d.GetObjects() {
		b := w.checkObject(t, obj)
		if obj.GetKind() == "data" {
			got, _, _ := readBack(t, b, csvFormat())
			ids = append(ids, got...)
		}
	}
	if !slices.Equal(ids, wantIDs) {
		t.Fatalf("landed %d ids, sent %d (first %v)", len(ids), len(wantIDs), ids[:min(3, len(ids))])
	}
}

// A delivery to a misspelled bucket fails at upload; its workflow and a
// notification say so with the steps a person follows; resolving before
// the fix fails again with the same cause, and says so; once the
// destination's bucket is corrected, Resolve reruns from the kept data and
// it lands, equal to what was sent.
func TestWorkflowMisspelledBucketResolved(t *testing.T) {
	w := startWorkflows(t, nil)
	ctx := context.Background()
	w.mayUseAnyBucket(t)
	dest := w.destination(t, "typo", &destinationv1.Destination{Format: csvFormat(), BucketOverride: w.bucket + "-typo", SuccessFile: true})
	recs := customerBatches(t, 3000, 500)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	d := w.failedDelivery(t, dest.GetName(), stream, errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND)

	wf := w.workflow(t, d.GetWorkflow())
	checkFailed(t, wf, "upload", errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND, "fix-bucket-name")
	fix := wf.GetActions()[0]
	if fix.GetKind() != deliveryv1.ActionKind_ACTION_KIND_FIX_BUCKET_NAME || fix.GetTarget() != dest.GetName() || len(fix.GetInstructions()) != 4 ||
		!strings.Contains(fix.GetInstructions()[0], "AWS management console") || !strings.Contains(fix.GetInstructions()[1], dest.GetName()) ||
		!strings.Contains(fix.GetInstructions()[2], "bucket name") || !strings.Contains(fix.GetInstructions()[3], "Resolve") {
		t.Errorf("fix-bucket-name action: %v", fix)
	}

	notes, err := w.flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production, Filter: "acknowledged = false"}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	if len(notes.GetNotifications()) != 1 {
		t.Fatalf("notifications: %v", notes)
	}
	note := notes.GetNotifications()[0]
	if note.GetWorkflow() != wf.GetName() || note.GetSeverity() != deliveryv1.Severity_SEVERITY_ERROR || note.GetReason() != "BUCKET_NOT_FOUND" ||
		!strings.Contains(note.GetTitle(), "typo") || !strings.Contains(note.GetMessage(), wf.GetName()) || note.GetAcknowledged() {
		t.Errorf("notification: %v", note)
	}

	// Resolved before the fix: the same cause, which says it is still there.
	if _, err := w.resolve(ctx, wf, "retry-task"); apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND {
		t.Fatalf("resolving before the fix: %v", err)
	}
	wf = w.workflow(t, d.GetWorkflow())
	checkFailed(t, wf, "upload", errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND, "fix-bucket-name")
	if len(wf.GetHistory()) != 1 || wf.GetCurrentRun().GetRun() != 2 || wf.GetCurrentRun().GetActionId() != "retry-task" || wf.GetCurrentRun().GetSubject() == "" {
		t.Errorf("after one resolution: history %v, current run %v", wf.GetHistory(), wf.GetCurrentRun())
	}
	if msg := wf.GetSteps()[3].GetError().GetMessage(); !strings.Contains(msg, "still there") {
		t.Errorf("the second failure does not say its cause is still there: %q", msg)
	}

	// The stale etag of the first read is refused.
	if _, err := w.flows.ResolveWorkflow(ctx, &deliveryv1.ResolveWorkflowRequest{Name: wf.GetName(), ActionId: "fix-bucket-name", Etag: "stale"}, w.admin); apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_ETAG_MISMATCH {
		t.Fatalf("resolving with a stale etag: %v", err)
	}
	if _, err := w.flows.ResolveWorkflow(ctx, &deliveryv1.ResolveWorkflowRequest{Name: wf.GetName(), ActionId: "no-such-action"}, w.admin); apierror.FromStatus(err).Fields()["action_id"] == "" {
		t.Fatalf("resolving with an unknown action: %v", err)
	}

	// The user corrects the bucket through the API, then resolves.
	if _, err := w.dests.UpdateDestination(ctx, &destinationv1.UpdateDestinationRequest{
		Destination: &destinationv1.Destination{Name: dest.GetName(), BucketOverride: w.bucket},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"bucket_override"}},
	}, w.admin); err != nil {
		t.Fatal(err)
	}
	got, err := w.resolve(ctx, wf, "fix-bucket-name")
	if err != nil {
		t.Fatalf("resolving after the fix: %v", err)
	}
	w.checkLanded(t, got, column(recs, "customer_id"))
	if got.GetName() != d.GetName() || got.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED {
		t.Errorf("resolved delivery: %v", got)
	}
	wf = w.workflow(t, d.GetWorkflow())
	if wf.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_SUCCEEDED || len(wf.GetHistory()) != 2 || len(wf.GetActions()) != 0 {
		t.Fatalf("after the fix: %v", wf)
	}
	for _, st := range wf.GetSteps() {
		if st.GetState() != deliveryv1.StepState_STEP_STATE_SUCCEEDED {
			t.Errorf("step %s after the fix: %v", st.GetStep(), st)
		}
	}
	for i, run := range wf.GetHistory() {
		if run.GetRun() != int32(i+1) || run.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_FAILED || failedOf(run) != "upload" {
			t.Errorf("history run %d: %v", i+1, run)
		}
	}
	// A succeeded workflow has nothing to resolve.
	if _, err := w.resolve(ctx, wf, "retry-task"); apierror.FromStatus(err).Code != codes.FailedPrecondition {
		t.Errorf("resolving a succeeded workflow: %v", err)
	}

	// Acknowledged, the notification leaves the unacknowledged list.
	acked, err := w.flows.AcknowledgeNotification(ctx, &deliveryv1.AcknowledgeNotificationRequest{Name: note.GetName()}, w.admin)
	if err != nil || !acked.GetAcknowledged() || acked.GetAcknowledgeTime() == nil {
		t.Fatalf("acknowledge: %v %v", acked, err)
	}
	notes, err = w.flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production, Filter: "acknowledged = false"}, w.admin)
	if err != nil || len(notes.GetNotifications()) != 1 || notes.GetNotifications()[0].GetName() == note.GetName() {
		// The second failure raised a notification of its own.
		t.Fatalf("unacknowledged after acknowledging the first: %v %v", notes, err)
	}
	listed, err := w.flows.ListWorkflows(ctx, &deliveryv1.ListWorkflowsRequest{Parent: production, Filter: `state = SUCCEEDED AND destination = "` + dest.GetName() + `"`}, w.admin)
	if err != nil || len(listed.GetWorkflows()) != 1 || listed.GetWorkflows()[0].GetName() != wf.GetName() {
		t.Fatalf("listing succeeded workflows of the destination: %v %v", listed, err)
	}
}

func failedOf(run *deliveryv1.WorkflowRun) string {
	for _, st := range run.GetSteps() {
		if st.GetState() == deliveryv1.StepState_STEP_STATE_FAILED {
			return st.GetStep()
		}
	}
	return ""
}

// A wrong secret key fails at get_access; the workflow points at the
// credential; updating it and resolving lands the data. Two resolutions at
// once run once.
func TestWorkflowInvalidCredentialsResolved(t *testing.T) {
	w := startWorkflows(t, nil)
	ctx := context.Background()
	cred, err := w.creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: production, CredentialId: "wrong-secret",
		Credential: &credentialv1.Credential{Bucket: w.bucket, Region: w.m.Region, Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{
			AccessKeyId: w.key, SecretAccessKey: "not-the-secret-" + w.secret}}}}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	dest, err := w.dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: production, DestinationId: "creds",
		Destination: &destinationv1.Destination{Credential: cred.GetName(), Prefix: "creds/", Format: csvFormat()}}, w.admin)
	if err != nil {
		t.Fatal(err)
	}
	recs := customerBatches(t, 2000, 500)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	d := w.failedDelivery(t, dest.GetName(), stream, errorsv1.ErrorReason_ERROR_REASON_INVALID_CREDENTIALS)
	wf := w.workflow(t, d.GetWorkflow())
	checkFailed(t, wf, "get_access", errorsv1.ErrorReason_ERROR_REASON_INVALID_CREDENTIALS, "fix-credential")
	fix := wf.GetActions()[0]
	if fix.GetTarget() != cred.GetName() || len(fix.GetInstructions()) != 3 || !strings.Contains(fix.GetInstructions()[0], "credentials") ||
		!strings.Contains(fix.GetInstructions()[1], cred.GetName()) || !strings.Contains(fix.GetInstructions()[2], "Resolve") {
		t.Errorf("fix-credential action: %v", fix)
	}
	if strings.Contains(fmt.Sprint(wf), w.secret) {
		t.Fatal("the workflow carries the secret key")
	}

	if _, err := w.creds.UpdateCredential(ctx, &credentialv1.UpdateCredentialRequest{
		Credential: &credentialv1.Credential{Name: cred.GetName(), Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: w.key, SecretAccessKey: w.secret}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"access_key.secret_access_key"}},
	}, w.admin); err != nil {
		t.Fatal(err)
	}
	// Two resolutions at once: one runs, the other is refused.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		landed   []*deliveryv1.Delivery
		refusals []error
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := w.resolve(ctx, wf, "fix-credential")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refusals = append(refusals, err)
				return
			}
			landed = append(landed, got)
		}()
	}
	wg.Wait()
	if len(landed) != 1 || len(refusals) != 1 || apierror.FromStatus(refusals[0]).Code != codes.Aborted {
		t.Fatalf("two resolutions at once: %d landed, refusals %v", len(landed), refusals)
	}
	w.checkLanded(t, landed[0], column(recs, "customer_id"))
	if wf := w.workflow(t, d.GetWorkflow()); len(wf.GetHistory()) != 1 || wf.GetCurrentRun().GetRun() != 2 || wf.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_SUCCEEDED {
		t.Fatalf("after two resolutions at once: %v", wf)
	}
	if objs, ups := w.left(t, "creds/"); len(objs) != len(landed[0].GetObjects()) || ups != 0 {
		t.Errorf("the prefix holds %v and %d uploads", objs, ups)
	}
}

// A MinIO user without s3:PutObject: the workflow names the permission and
// the statement to add; granted, Resolve lands the data.
func TestWorkflowAccessDeniedResolved(t *testing.T) {
	w := startWorkflows(t, nil)
	ctx := context.Background()
	readOnly := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketLocation","s3:GetObject","s3:DeleteObject","s3:AbortMultipartUpload","s3:ListMultipartUploadParts"],"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`, w.bucket, w.bucket)
	if err := testenv.SetMinIOUser(ctx, w.m, w.key, w.secret, readOnly); err != nil {
		t.Fatal(err)
	}
	dest := w.destination(t, "denied", &destinationv1.Destination{Format: csvFormat()})
	recs := customerBatches(t, 2000, 500)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	d := w.failedDelivery(t, dest.GetName(), stream, errorsv1.ErrorReason_ERROR_REASON_ACCESS_DENIED)
	wf := w.workflow(t, d.GetWorkflow())
	checkFailed(t, wf, "upload", errorsv1.ErrorReason_ERROR_REASON_ACCESS_DENIED, "grant-permission")
	grant := wf.GetActions()[0]
	if grant.GetMissingPermission() != "s3:PutObject" || !strings.Contains(grant.GetPolicyJson(), `"s3:PutObject"`) ||
		!strings.Contains(grant.GetPolicyJson(), "arn:aws:s3:::"+w.bucket+"/denied/*") || grant.GetTarget() != w.cred {
		t.Fatalf("grant-permission action: %v", grant)
	}
	full := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`, w.bucket, w.bucket)
	if err := testenv.SetMinIOUser(ctx, w.m, w.key, w.secret, full); err != nil {
		t.Fatal(err)
	}
	got, err := w.resolve(ctx, wf, "grant-permission")
	if err != nil {
		t.Fatalf("resolving after the grant: %v", err)
	}
	w.checkLanded(t, got, column(recs, "customer_id"))
}

// Who may see and resolve a workflow follows the delivery's destination:
// a user restricted from PII does not see a workflow of a destination
// that does not allow limited PII access, exactly as if it did not exist.
func TestWorkflowVisibilityFollowsTheDestination(t *testing.T) {
	w := startWorkflows(t, nil)
	ctx := context.Background()
	w.mayUseAnyBucket(t)
	dest := w.destination(t, "pii", &destinationv1.Destination{Format: csvFormat(), BucketOverride: w.bucket + "-typo"})
	recs := customerBatches(t, 500, 500)
	d := w.failedDelivery(t, dest.GetName(), ipcBytes(t, recs[0].Schema(), recs...), errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND)
	restricted := w.r.token("acme", auth.PolicyRestrictPII)
	other := w.r.token("globex", auth.PolicyAdministrator)
	for name, as := range map[string]grpc.CallOption{"restricted": restricted, "other tenant": other} {
		if _, err := w.flows.GetWorkflow(ctx, &deliveryv1.GetWorkflowRequest{Name: d.GetWorkflow()}, as); apierror.FromStatus(err).Code != codes.NotFound {
			t.Errorf("%s: GetWorkflow %v, want NotFound", name, err)
		}
		if _, err := w.flows.ResolveWorkflow(ctx, &deliveryv1.ResolveWorkflowRequest{Name: d.GetWorkflow(), ActionId: "retry-task"}, as); apierror.FromStatus(err).Code != codes.NotFound {
			t.Errorf("%s: ResolveWorkflow %v, want NotFound", name, err)
		}
	}
	list, err := w.flows.ListWorkflows(ctx, &deliveryv1.ListWorkflowsRequest{Parent: production}, restricted)
	if err != nil || len(list.GetWorkflows()) != 0 {
		t.Errorf("restricted user lists %v %v", list, err)
	}
	notes, err := w.flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production}, restricted)
	if err != nil || len(notes.GetNotifications()) != 0 {
		t.Errorf("restricted user lists notifications %v %v", notes, err)
	}
	all, err := w.flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production}, w.admin)
	if err != nil || len(all.GetNotifications()) != 1 {
		t.Fatalf("admin lists notifications %v %v", all, err)
	}
	if _, err := w.flows.AcknowledgeNotification(ctx, &deliveryv1.AcknowledgeNotificationRequest{Name: all.GetNotifications()[0].GetName()}, restricted); apierror.FromStatus(err).Code != codes.NotFound {
		t.Errorf("restricted user acknowledges: %v, want NotFound", err)
	}
	for _, filter := range []string{"state = BROKEN", "acknowledged = maybe", "owner = x", `state = "FAILED"`} {
		_, err1 := w.flows.ListWorkflows(ctx, &deliveryv1.ListWorkflowsRequest{Parent: production, Filter: filter}, w.admin)
		_, err2 := w.flows.ListNotifications(ctx, &deliveryv1.ListNotificationsRequest{Parent: production, Filter: filter}, w.admin)
		if apierror.FromStatus(err1).Fields()["filter"] == "" || apierror.FromStatus(err2).Fields()["filter"] == "" {
			t.Errorf("filter %q: %v / %v", filter, err1, err2)
		}
	}
}

// S3 faults from a proxy in front of MinIO. Shorter than the retries
// (SlowDown on two parts, InternalError on a completion): the delivery
// succeeds with the right bytes, each retried request counted on the
// upload step, nothing run twice. Outlasting them: a TRANSIENT workflow,
// whose Resolve lands the data once the fault is lifted.
func TestWorkflowTransientS3Faults(t *testing.T) {
	m := testenv.SharedMinIO(t)
	fault := testenv.NewS3Fault(t, m)
	w := startWorkflowsOn(t, m, func(c *serveConfig) {
		c.Credential.AWS.S3URL = fault.Endpoint
		c.Delivery.PartSize = 5 << 20
		c.Delivery.RequestAttempts, c.Delivery.RequestMaxBackoff = 3, 100*time.Millisecond
		c.Delivery.TransientRetries = 1
	})
	ctx := context.Background()
	recs := customerBatches(t, 40_000, 4000)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	want := column(recs, "customer_id")
	ours := func(r testenv.S3Request) bool { return r.Bucket == w.bucket }

	short := w.destination(t, "short", &destinationv1.Destination{Format: csvFormat(), SuccessFile: true})
	fault.Fail(testenv.SlowDown, 2, func(r testenv.S3Request) bool { return ours(r) && r.UploadPart() })
	fault.Fail(testenv.InternalError, 1, func(r testenv.S3Request) bool { return ours(r) && r.Complete() })
	got, err := deliverclient.DeliverStream(ctx, w.delivs, &deliveryv1.DeliveryStart{Destination: short.GetName(), OutputName: "out"}, bytes.NewReader(stream),
		deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}})
	if err != nil {
		t.Fatalf("a fault shorter than the retries failed the delivery: %v", err)
	}
	injected := fault.Count(testenv.SlowDown) + fault.Count(testenv.InternalError)
	if injected != 3 {
		t.Fatalf("the proxy injected %d faults, want 3", injected)
	}
	w.checkLanded(t, got, want)
	if got.GetObjects()[0].GetParts() < 2 {
		t.Fatalf("the data object has %d parts: the test needs a multipart upload", got.GetObjects()[0].GetParts())
	}
	wf := w.workflow(t, got.GetWorkflow())
	attempts := map[string]int32{}
	for _, st := range wf.GetSteps() {
		attempts[st.GetStep()] = st.GetAttempts()
	}
	if wf.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_SUCCEEDED || attempts["upload"] != 1+int32(injected) ||
		attempts["convert"] != 1 || attempts["get_access"] != 1 || attempts["finish"] != 1 {
		t.Fatalf("after %d injected faults: attempts %v, workflow %s", injected, attempts, wf.GetState())
	}

	long := w.destination(t, "long", &destinationv1.Destination{Format: csvFormat(), SuccessFile: true})
	fault.Fail(testenv.SlowDown, -1, func(r testenv.S3Request) bool { return ours(r) && r.UploadPart() })
	d := w.failedDelivery(t, long.GetName(), stream, errorsv1.ErrorReason_ERROR_REASON_TRANSIENT)
	wf = w.workflow(t, d.GetWorkflow())
	checkFailed(t, wf, "upload", errorsv1.ErrorReason_ERROR_REASON_TRANSIENT, "")
	if up := wf.GetSteps()[3]; up.GetAttempts() <= 3 {
		t.Errorf("upload attempts %d: the retries were not counted", up.GetAttempts())
	}
	if objs, ups := w.left(t, "long/"); len(objs) != 0 || ups != 0 {
		t.Errorf("a failed delivery left %v and %d uploads", objs, ups)
	}
	fault.Clear()
	got, err = w.resolve(ctx, wf, "retry-task")
	if err != nil {
		t.Fatalf("resolving once the fault is lifted: %v", err)
	}
	w.checkLanded(t, got, want)
}

// Faults of the network between Sluice and S3, from toxiproxy (as a
// library) in front of the S3 proxy in front of MinIO: the connection of a
// part upload reset by the peer, a path that drops every byte of S3's
// answer (only Sluice's read timeout ends it), and a connection cut after
// 64 KiB of a part's body. Each strikes while the second part is in
// flight (held by the S3 proxy until the toxic is on, then let go) and
// lasts until that part is tried again: the delivery succeeds with the
// right bytes, the retries counted on the upload step, no upload left.
func TestWorkflowNetworkFaults(t *testing.T) {
	m := testenv.SharedMinIO(t)
	fault := testenv.NewS3Fault(t, m)
	network := testenv.NewNetwork(t, fault.Endpoint)
	w := startWorkflowsOn(t, m, func(c *serveConfig) {
		c.Credential.AWS.S3URL = network.Endpoint
		c.Credential.AWS.S3ReadTimeout = 3 * time.Second
		c.Delivery.PartSize = 5 << 20
		c.Delivery.RequestAttempts, c.Delivery.RequestMaxBackoff = 5, 500*time.Millisecond
		// Should the toxic come off late (it waits for stalled links),
		// a rerun from staged input is still a retry before anyone is told.
		c.Delivery.TransientRetries = 1
	})
	recs := customerBatches(t, 60_000, 4000)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	want := column(recs, "customer_id")
	for _, tc := range []struct {
		name, toxic, stream, attributes string
	}{
		{"connection reset", testenv.ResetPeer, "downstream", `{"timeout":0}`},
		{"answer dropped", testenv.Blackhole, "downstream", `{"timeout":0}`},
		{"connection cut", testenv.LimitData, "upstream", `{"bytes":65536}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := strings.ReplaceAll(tc.name, " ", "-")
			dest := w.destination(t, prefix, &destinationv1.Destination{Format: csvFormat(), SuccessFile: true})
			ours := func(r testenv.S3Request) bool { return r.Bucket == w.bucket && strings.HasPrefix(r.Key, prefix+"/") }
			var held atomic.Bool
			heldBefore := fault.Count("held")
			fault.Hold(func(r testenv.S3Request) bool {
				return ours(r) && r.UploadPart() && r.Query.Get("partNumber") == "2" && !held.Swap(true)
			})
			type answer struct {
				d   *deliveryv1.Delivery
				err error
			}
			done := make(chan answer, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				d, err := deliverclient.DeliverStream(ctx, w.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "out"}, bytes.NewReader(stream),
					deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}})
				done <- answer{d, err}
			}()
			for i := 0; fault.Count("held") == heldBefore; i++ {
				if i == 1200 {
					t.Fatal("the second part never reached S3")
				}
				time.Sleep(50 * time.Millisecond)
			}
			// The toxic stays until a request is tried again (taken off on
			// a goroutine of its own: the proxy's handler must not wait).
			parts := map[string]bool{}
			var lifted atomic.Bool
			name := make(chan string, 1)
			fault.When(func(r testenv.S3Request) bool {
				id := r.Method + " " + r.Key + "?" + r.Query.Encode()
				again := parts[id]
				parts[id] = true
				return ours(r) && again
			}, func() {
				lifted.Store(true)
				go func() { network.Remove(<-name) }()
			})
			// A toxic on requests cannot go onto the held one's link until
			// its body moves: let it go when the toxic is not on by then.
			added := make(chan error, 1)
			go func() {
				n, err := network.Add(tc.toxic, tc.stream, tc.attributes)
				name <- n
				added <- err
			}()
			var err error
			select {
			case err = <-added:
				fault.Release()
			case <-time.After(2 * time.Second):
				fault.Release()
				err = <-added
			}
			if err != nil {
				t.Fatal(err)
			}
			a := <-done
			if a.err != nil {
				t.Fatalf("a network fault shorter than the retries failed the delivery: %v", a.err)
			}
			if !lifted.Load() {
				t.Fatal("no part was tried again: the toxic never struck")
			}
			w.checkLanded(t, a.d, want)
			if a.d.GetObjects()[0].GetParts() < 3 {
				t.Fatalf("the data object has %d parts: the test needs three", a.d.GetObjects()[0].GetParts())
			}
			wf := w.workflow(t, a.d.GetWorkflow())
			for _, st := range wf.GetSteps() {
				if st.GetStep() == "upload" && st.GetAttempts() < 2 {
					t.Errorf("upload attempts %d: the retried part was not counted", st.GetAttempts())
				}
			}
			if objs, ups := w.left(t, prefix+"/"); ups != 0 || len(objs) != len(a.d.GetObjects()) {
				t.Errorf("after the delivery: objects %v, %d uploads left", objs, ups)
			}
		})
	}
}

// With sluice serve, grpcurl (reflection only) lists the notification and
// the workflow of a failed delivery, shows its resolutions, and
// ResolveWorkflow answers with the rerun's result.
func TestGrpcurlResolvesAWorkflow(t *testing.T) {
	grpcurl := filepath.Join(localserver.ToolsDir(), "grpcurl")
	if _, err := os.Stat(grpcurl); err != nil {
		t.Fatalf("grpcurl is not built in %s: run `make tools`", localserver.ToolsDir())
	}
	w := startWorkflows(t, nil)
	w.mayUseAnyBucket(t)
	ctx := context.Background()
	dest := w.destination(t, "grpcurl", &destinationv1.Destination{Format: csvFormat(), BucketOverride: w.bucket + "-typo"})
	recs := customerBatches(t, 1000, 500)
	d := w.failedDelivery(t, dest.GetName(), ipcBytes(t, recs[0].Schema(), recs...), errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND)
	tok, err := w.r.users.Mint("eng@acme.test", "acme", []string{auth.PolicyAdministrator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, body string, into any) {
		t.Helper()
		out, err := exec.Command(grpcurl, "-plaintext", "-H", "authorization: Bearer "+tok, "-d", body,
			w.r.addrs["delivery"], "sluice.delivery.v1.WorkflowService/"+method).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %s: %v\n%s", method, err, out)
		}
		if err := json.Unmarshal(out, into); err != nil {
			t.Fatalf("grpcurl %s printed %s: %v", method, out, err)
		}
	}
	var notes struct {
		Notifications []struct{ Workflow, Title, Reason string } `json:"notifications"`
	}
	call("ListNotifications", `{"parent":"`+production+`","filter":"acknowledged = false"}`, &notes)
	if len(notes.Notifications) != 1 || notes.Notifications[0].Workflow != d.GetWorkflow() || notes.Notifications[0].Reason != "BUCKET_NOT_FOUND" {
		t.Fatalf("grpcurl listed notifications %+v", notes)
	}
	var wf struct {
		State   string
		Etag    string
		Actions []struct {
			ID           string `json:"id"`
			Kind         string
			Instructions []string
		}
	}
	call("GetWorkflow", `{"name":"`+d.GetWorkflow()+`"}`, &wf)
	if wf.State != "WORKFLOW_STATE_FAILED" || len(wf.Actions) != 3 || wf.Actions[0].Kind != "ACTION_KIND_FIX_BUCKET_NAME" || len(wf.Actions[0].Instructions) != 4 {
		t.Fatalf("grpcurl showed the workflow %+v", wf)
	}
	if _, err := w.dests.UpdateDestination(ctx, &destinationv1.UpdateDestinationRequest{
		Destination: &destinationv1.Destination{Name: dest.GetName(), BucketOverride: w.bucket},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"bucket_override"}},
	}, w.admin); err != nil {
		t.Fatal(err)
	}
	var resolved struct {
		Name    string
		State   string
		Objects []struct{ Key string }
	}
	call("ResolveWorkflow", `{"name":"`+d.GetWorkflow()+`","action_id":"`+wf.Actions[0].ID+`","etag":"`+wf.Etag+`"}`, &resolved)
	if resolved.Name != d.GetName() || resolved.State != "DELIVERY_STATE_SUCCEEDED" || len(resolved.Objects) != 1 {
		t.Fatalf("grpcurl resolved %+v", resolved)
	}
}

// A customer's role whose trust policy names another External ID: the
// delivery fails at get_access with ROLE_NOT_ASSUMABLE, the workflow shows
// the trust policy to paste (the credential's own, as the credential
// service shows it); pasted on moto, Resolve lands the data in the
// customer's bucket.
func TestWorkflowRoleNotAssumableResolved(t *testing.T) {
	m := testenv.SharedMoto(t)
	r := startServeWith(t, func(c *serveConfig) {
		c.Credential.AWS = awsclient.Endpoints{Region: m.Region, STSURL: m.Endpoint, S3URL: m.Endpoint, S3PathStyle: true,
			PlatformCredentials: credentials.NewStaticCredentialsProvider(m.Platform.AccessKeyID, m.Platform.SecretAccessKey, "")}
		c.Credential.PlatformRoleARN = m.PlatformARN
	})
	ctx := context.Background()
	admin := r.token("acme", auth.PolicyAdministrator)
	role := testenv.NewCustomerRole(t, m, "acme-workflow", "someone-elses-external-id", "")
	creds := credentialv1.NewCredentialServiceClient(r.conns["credential"])
	dests := destinationv1.NewDestinationServiceClient(r.conns["destination"])
	flows := deliveryv1.NewWorkflowServiceClient(r.conns["delivery"])
	cred, err := creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: production, CredentialId: "role",
		Credential: &credentialv1.Credential{Bucket: role.Bucket, Region: m.Region,
			Type: &credentialv1.Credential_RoleToRole{RoleToRole: &credentialv1.RoleToRole{TargetRoleArn: role.ARN}}}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	// moto miscomputes SigV4 for queries holding an encoded slash: no slash
	// in the prefix.
	dest, err := dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: production, DestinationId: "role",
		Destination: &destinationv1.Destination{Credential: cred.GetName(), Prefix: "exports-", Format: csvFormat()}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	recs := customerBatches(t, 1000, 500)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	_, err = deliverclient.DeliverStream(ctx, deliveryv1.NewDeliveryServiceClient(r.conns["delivery"]), &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "out"},
		bytes.NewReader(stream), deliverclient.Options{CallOptions: []grpc.CallOption{admin}})
	e := apierror.FromStatus(err)
	if e == nil || e.Reason != errorsv1.ErrorReason_ERROR_REASON_ROLE_NOT_ASSUMABLE {
		t.Fatalf("delivery through a role with another External ID: %v", err)
	}
	wf, err := flows.GetWorkflow(ctx, &deliveryv1.GetWorkflowRequest{Name: e.Metadata["delivery"] + "/workflow"}, admin)
	if err != nil {
		t.Fatal(err)
	}
	checkFailed(t, wf, "get_access", errorsv1.ErrorReason_ERROR_REASON_ROLE_NOT_ASSUMABLE, "fix-trust-policy")
	fix := wf.GetActions()[0]
	if fix.GetTarget() != cred.GetName() || fix.GetPolicyJson() != cred.GetRoleToRole().GetTrustPolicyJson() || !strings.Contains(fix.GetPolicyJson(), cred.GetRoleToRole().GetExternalId()) {
		t.Fatalf("fix-trust-policy action: %v", fix)
	}
	// The customer pastes the policy the action shows.
	if _, err := m.IAM(m.Admin).UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("acme-workflow"), PolicyDocument: aws.String(fix.GetPolicyJson())}); err != nil {
		t.Fatal(err)
	}
	got, err := flows.ResolveWorkflow(ctx, &deliveryv1.ResolveWorkflowRequest{Name: wf.GetName(), ActionId: fix.GetId(), Etag: wf.GetEtag()}, admin)
	if err != nil {
		t.Fatalf("resolving after the trust policy was pasted: %v", err)
	}
	if got.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED || len(got.GetObjects()) != 1 {
		t.Fatalf("resolved: %v", got)
	}
	obj, err := m.S3(m.Admin).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(role.Bucket), Key: aws.String(got.GetObjects()[0].GetKey())})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ids, _, _ := readBack(t, b, csvFormat()); !slices.Equal(ids, column(recs, "customer_id")) {
		t.Fatalf("the customer's bucket holds %d ids, %d sent", len(ids), len(recs))
	}
}

// A destination whose credential an administrator deleted (force) fails at
// get_access with CREDENTIAL_DELETED, pointing at the credential to make
// again.
func TestWorkflowCredentialDeleted(t *testing.T) {
	w := startWorkflows(t, nil)
	ctx := context.Background()
	dest := w.destination(t, "orphan", &destinationv1.Destination{Format: csvFormat()})
	if _, err := w.creds.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: w.cred, Force: true}, w.admin); err != nil {
		t.Fatal(err)
	}
	recs := customerBatches(t, 500, 500)
	d := w.failedDelivery(t, dest.GetName(), ipcBytes(t, recs[0].Schema(), recs...), errorsv1.ErrorReason_ERROR_REASON_CREDENTIAL_DELETED)
	wf := w.workflow(t, d.GetWorkflow())
	checkFailed(t, wf, "get_access", errorsv1.ErrorReason_ERROR_REASON_CREDENTIAL_DELETED, "fix-credential")
	if msg := wf.GetSteps()[0].GetError().GetMessage(); !strings.Contains(msg, w.cred) || !strings.Contains(msg, "no longer exists") {
		t.Errorf("the cause in words: %q", msg)
	}
}

// A destination's PGP key whose encryption subkey expired after it was
// set: the delivery fails at check_destination with PGP_KEY_NOT_USABLE and
// the fix-pgp-key action; a new key pasted, Resolve lands files the
// recipient decrypts.
func TestWorkflowExpiredPGPKeyResolved(t *testing.T) {
	w := startWorkflows(t, nil)
	ctx := context.Background()
	g := testenv.NewGnuPG(t)
	g.Run(nil, "--quick-gen-key", "expiring@acme.test", "ed25519", "sign", "never")
	var fpr string
	for _, line := range strings.Split(string(g.Run(nil, "--with-colons", "--list-keys", "expiring@acme.test")), "\n") {
		if strings.HasPrefix(line, "fpr:") {
			fpr = strings.Split(line, ":")[9] // the primary key's, listed first
			break
		}
	}
	g.Run(nil, "--quick-add-key", fpr, "cv25519", "encr", "seconds=2")
	expiring := string(g.Run(nil, "--armor", "--export", "expiring@acme.test"))
	dest := w.destination(t, "pgp", &destinationv1.Destination{Format: csvFormat(), PgpPublicKey: expiring})
	time.Sleep(3 * time.Second) // the subkey expires
	recs := customerBatches(t, 500, 500)
	d := w.failedDelivery(t, dest.GetName(), ipcBytes(t, recs[0].Schema(), recs...), errorsv1.ErrorReason_ERROR_REASON_PGP_KEY_NOT_USABLE)
	wf := w.workflow(t, d.GetWorkflow())
	checkFailed(t, wf, "check_destination", errorsv1.ErrorReason_ERROR_REASON_PGP_KEY_NOT_USABLE, "fix-pgp-key")
	if a := wf.GetActions()[0]; a.GetTarget() != dest.GetName() || a.GetKind() != deliveryv1.ActionKind_ACTION_KIND_FIX_PGP_KEY {
		t.Errorf("fix-pgp-key action: %v", a)
	}
	fresh := g.Key("fresh@acme.test", "default", "default")
	if _, err := w.dests.UpdateDestination(ctx, &destinationv1.UpdateDestinationRequest{
		Destination: &destinationv1.Destination{Name: dest.GetName(), PgpPublicKey: fresh},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"pgp_public_key"}},
	}, w.admin); err != nil {
		t.Fatal(err)
	}
	got, err := w.resolve(ctx, wf, "fix-pgp-key")
	if err != nil {
		t.Fatalf("resolving with a fresh key: %v", err)
	}
	if got.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED || len(got.GetObjects()) != 1 {
		t.Fatalf("resolved: %v", got)
	}
	ids, _, _ := readBack(t, g.Decrypt(w.get(t, got.GetObjects()[0].GetKey())), csvFormat())
	if !slices.Equal(ids, column(recs, "customer_id")) {
		t.Fatalf("decrypted %d ids, sent %d", len(ids), len(column(recs, "customer_id")))
	}
}
