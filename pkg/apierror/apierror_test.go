package apierror_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
)

// Every reason of the API goes on the wire under its short name and reads
// back as itself.
func TestReasonNamesRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for v, name := range errorsv1.ErrorReason_name {
		r := errorsv1.ErrorReason(v)
		short := apierror.ReasonName(r)
		if r != errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED && (short == name || short == "" || seen[short]) {
			t.Errorf("%s goes on the wire as %q", name, short)
		}
		seen[short] = true
		if got := apierror.ParseReason(short); got != r {
			t.Errorf("ParseReason(%q) = %v, want %v", short, got, r)
		}
	}
	if got := apierror.ReasonName(errorsv1.ErrorReason_ERROR_REASON_INVALID_BUCKET_NAME); got != "INVALID_BUCKET_NAME" {
		t.Errorf("wire name %q, want INVALID_BUCKET_NAME", got)
	}
	if got := apierror.ParseReason("A_REASON_FROM_A_NEWER_SERVICE"); got != errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		t.Errorf("an unknown name parsed as %v", got)
	}
}

// What Status sends, FromStatus reads back whole; statuses that are not
// Sluice's read with no reason.
func TestFromStatusDecodesWhatStatusSends(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var v apierror.Violations
	v.Add("destination.bucket_override", "%q is not a bucket name", "No_Such")
	v.Add("page_size", "must be at most 1000")
	sent := &apierror.Error{
		Code:       codes.InvalidArgument,
		Reason:     errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT,
		Message:    "the request is invalid",
		Violations: []apierror.FieldViolation{{Field: "destination.bucket_override", Description: `"No_Such" is not a bucket name`}, {Field: "page_size", Description: "must be at most 1000"}},
	}
	got := apierror.FromStatus(apierror.Status(context.Background(), logger, v.Err()))
	if diff := cmp.Diff(sent, got, cmp.AllowUnexported(apierror.Error{})); diff != "" {
		t.Errorf("decoded (-sent +got):\n%s", diff)
	}
	if got.Fields()["page_size"] != "must be at most 1000" {
		t.Errorf("Fields() = %v", got.Fields())
	}

	withMeta := apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_RESUME_OFFSET_MISMATCH, "resume at 42").With("resume_offset", "42")
	got = apierror.FromStatus(fmt.Errorf("wrapped: %w", apierror.Status(context.Background(), logger, withMeta)))
	if got.Code != codes.FailedPrecondition || got.Reason != errorsv1.ErrorReason_ERROR_REASON_RESUME_OFFSET_MISMATCH || got.Metadata["resume_offset"] != "42" {
		t.Errorf("decoded %+v", got)
	}

	busy := apierror.New(codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_TOO_MANY_STREAMS, "too many streams").With("limit", "tenant")
	busy.RetryAfter = 1500 * time.Millisecond
	got = apierror.FromStatus(apierror.Status(context.Background(), logger, busy))
	if got.Code != codes.ResourceExhausted || got.Reason != errorsv1.ErrorReason_ERROR_REASON_TOO_MANY_STREAMS || got.RetryAfter != 1500*time.Millisecond || got.Metadata["limit"] != "tenant" {
		t.Errorf("decoded %+v, want the RetryInfo delay back", got)
	}

	got = apierror.FromStatus(status.Error(codes.Unavailable, "connection refused"))
	if got.Reason != errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED || got.Code != codes.Unavailable {
		t.Errorf("gRPC's own status decoded as %+v", got)
	}
	if apierror.CodeReason(codes.Unavailable) != errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE || apierror.CodeReason(codes.DataLoss) != errorsv1.ErrorReason_ERROR_REASON_INTERNAL {
		t.Error("CodeReason")
	}
	if got := apierror.FromStatus(errors.New("plain")); got.Code != codes.Unknown {
		t.Errorf("a plain error decoded as %+v", got)
	}
	if apierror.FromStatus(nil) != nil {
		t.Error("nil decoded as an error")
	}
}

// A status's message is bounded, so that it fits in HTTP/2 trailers with
// its details: one over the peer's header limit arrives as another error.
func TestStatusMessagesAreBounded(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	long := apierror.New(codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARROW_STREAM, strings.Repeat("é", 1<<20)).With("delivery", "d")
	got := apierror.FromStatus(apierror.Status(context.Background(), logger, long))
	if len(got.Message) > 5<<10 || !utf8.ValidString(got.Message) || got.Reason != errorsv1.ErrorReason_ERROR_REASON_INVALID_ARROW_STREAM || got.Metadata["delivery"] != "d" {
		t.Fatalf("a 2 MiB message went out as %d bytes, reason %v, metadata %v", len(got.Message), got.Reason, got.Metadata)
	}
}

// With returns a copy: the error it is called on is not changed, so a
// shared error value cannot gain another caller's metadata.
func TestWithReturnsACopy(t *testing.T) {
	base := apierror.New(codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND, "not found").With("resource", "a")
	one := base.With("delivery", "d1")
	two := base.With("delivery", "d2")
	if len(base.Metadata) != 1 || one.Metadata["delivery"] != "d1" || two.Metadata["delivery"] != "d2" || one.Metadata["resource"] != "a" {
		t.Fatalf("base %v, one %v, two %v", base.Metadata, one.Metadata, two.Metadata)
	}
}
