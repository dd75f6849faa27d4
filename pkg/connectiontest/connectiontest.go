// Package connectiontest runs the checks of a connection test (credential
// or destination) in order, skips those after a failure, and answers each
// in the TestResult form: passed, failed with a stable reason and the
// missing permission, or skipped.
package connectiontest

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/awserror"
	"github.com/sluicehq/sluice/pkg/logging"
)

// Run records the checks of one test.
type Run struct {
	ctx    context.Context
	bucket string
	result *credentialv1.TestResult
	failed bool
}

// New starts a test of bucket (named in failure messages) for the request
// in ctx, whose logger receives the causes users are told are logged.
func New(ctx context.Context, bucket string) *Run {
	return &Run{ctx: ctx, bucket: bucket, result: &credentialv1.TestResult{}}
}

// Check runs fn as the check called name, unless an earlier check failed.
// An error is classified by awserror: a user reads words, never AWS's.
func (r *Run) Check(name string, fn func() error) {
	check := &credentialv1.TestCheck{Check: name}
	r.result.Checks = append(r.result.Checks, check)
	if r.failed {
		check.Outcome = credentialv1.TestOutcome_TEST_OUTCOME_SKIPPED
		check.Message = "not run: an earlier check failed"
		return
	}
	start := time.Now()
	err := fn()
	check.Duration = durationpb.New(time.Since(start))
	if err == nil {
		check.Outcome = credentialv1.TestOutcome_TEST_OUTCOME_PASSED
		return
	}
	r.failed = true
	cause := awserror.Classify(err, r.bucket)
	check.Outcome = credentialv1.TestOutcome_TEST_OUTCOME_FAILED
	check.Reason, check.Message, check.MissingPermission = apierror.ReasonName(cause.Reason), cause.Message, cause.MissingPermission
	if cause.Reason == errorsv1.ErrorReason_ERROR_REASON_UNKNOWN {
		// The message tells the user the details are in the service log:
		// they are, with the request id the user can quote.
		logging.FromContext(r.ctx).WarnContext(r.ctx, "connection test check failed for a reason Sluice does not recognise",
			slog.String("check", name), slog.String("bucket", r.bucket), slog.String("error", err.Error()))
	}
}

// Failed reports whether a check failed.
func (r *Run) Failed() bool { return r.failed }

// Result answers the test's result.
func (r *Run) Result() *credentialv1.TestResult {
	r.result.Ok = !r.failed
	return r.result
}

// Summary renders a result on one line, `check=OUTCOME(REASON permission)`
// per check, for people reading a terminal and for tests.
func Summary(r *credentialv1.TestResult) string {
	var parts []string
	for _, c := range r.GetChecks() {
		s := c.GetCheck() + "=" + strings.TrimPrefix(c.GetOutcome().String(), "TEST_OUTCOME_")
		if c.GetReason() != "" {
			s += "(" + c.GetReason()
			if c.GetMissingPermission() != "" {
				s += " " + c.GetMissingPermission()
			}
			s += ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}
