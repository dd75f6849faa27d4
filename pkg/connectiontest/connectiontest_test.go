package connectiontest_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	"github.com/sluicehq/sluice/pkg/connectiontest"
	"github.com/sluicehq/sluice/pkg/logging"
)

// Issue 9, item 12: a check failing for an unrecognised reason tells the
// user the details are in the service log; they must be, with the request
// id.
func TestUnknownCauseIsLoggedWithTheRequestID(t *testing.T) {
	var logs bytes.Buffer
	ctx := logging.WithRequestID(logging.WithLogger(context.Background(), logging.New(&logs, slog.LevelInfo, "test")), "req-42")
	r := connectiontest.New(ctx, "acme-exports")
	r.Check("put_object", func() error { return errors.New("teapot: the bucket brewed tea instead") })
	r.Check("delete_object", func() error { return nil })
	res := r.Result()
	if res.GetOk() || res.GetChecks()[0].GetReason() != "UNKNOWN" || !strings.Contains(res.GetChecks()[0].GetMessage(), "service log") {
		t.Fatalf("result: %v", res)
	}
	if res.GetChecks()[1].GetOutcome() != credentialv1.TestOutcome_TEST_OUTCOME_SKIPPED {
		t.Fatalf("the check after a failure ran: %v", res.GetChecks()[1])
	}
	line := logs.String()
	for _, want := range []string{`"request_id":"req-42"`, `"check":"put_object"`, "brewed tea"} {
		if !strings.Contains(line, want) {
			t.Fatalf("log lacks %s:\n%s", want, line)
		}
	}
}
