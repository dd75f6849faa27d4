package delivery

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/awserror"
	"github.com/sluicehq/sluice/pkg/compression"
	"github.com/sluicehq/sluice/pkg/partition"
	"github.com/sluicehq/sluice/pkg/staging"
)

// failure is the one place a delivery's failure becomes the error its
// caller sees: a stable reason, the delivery's name in the metadata, and
// for an invalid stream, where in it.
func failure(err error, delivery, bucket string) *apierror.Error {
	var (
		e      *apierror.Error
		ingest *arrowingest.Error
		schema *schemaError
		share  *tenantStagingFull
		value  *arrowfmt.ValueError
		hung   *hungEndpoint
		input  *inputUnreadable
		broke  *streamBroke
	)
	switch {
	case errors.As(err, &e):
		// Already a caller's error (a second DeliveryStart, ...).
	case errors.As(err, &input):
		msg := "the delivery's kept input could not be read back to run it again; it is still kept: resolve again once staging answers"
		if errors.Is(err, staging.ErrNotFound) {
			msg = "the delivery's kept input is gone from staging, so it cannot run again: send the data again"
		}
		e = apierror.Wrap(err, codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_STAGED_INPUT_UNREADABLE, msg)
	case errors.As(err, &broke) && status.Code(broke.err) == codes.ResourceExhausted:
		// gRPC refused a message over the limit before the service saw it.
		e = apierror.Wrap(err, codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_MESSAGE_TOO_LARGE,
			fmt.Sprintf("a message of the stream is larger than the service's limit of %d bytes: cut the Arrow IPC stream into smaller messages (1 to 4 MiB goes fastest)", MaxMessageBytes)).
			With("max_message_bytes", strconv.Itoa(MaxMessageBytes))
	case errors.As(err, &value):
		msg := "a value cannot be written in the destination's format with its settings: " + value.Error()
		e = apierror.Wrap(err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_VALUE_NOT_WRITABLE, msg).
			With("column", value.Column).With("row", strconv.FormatInt(value.Row, 10))
		e.Violations = []apierror.FieldViolation{{Field: "arrow_ipc", Description: msg}}
	case errors.As(err, &hung):
		e = apierror.Wrap(err, codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_TRANSIENT,
			fmt.Sprintf("S3 did not answer within %s: the endpoint hangs; the data is kept, resolve the workflow to retry once S3 answers", hung.limit))
	case errors.As(err, &share):
		e = apierror.Wrap(err, codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_STAGING_FULL, share.Error()).With("scope", "tenant")
	case errors.As(err, &ingest):
		e = apierror.Wrap(err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_INVALID_ARROW_STREAM, ingest.Error()).
			With("offset", strconv.FormatInt(ingest.Offset, 10)).With("batch", strconv.Itoa(ingest.Batch))
		e.Violations = []apierror.FieldViolation{{Field: "arrow_ipc", Description: ingest.Error()}}
	case errors.As(err, &schema):
		msg := "the destination's format cannot carry the stream's schema: " + schema.Error()
		e = apierror.Wrap(err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_SCHEMA_NOT_SUPPORTED, msg)
		e.Violations = []apierror.FieldViolation{{Field: "arrow_ipc", Description: msg}}
		var ue *arrowfmt.UnsupportedError
		var ce *arrowfmt.ColumnError
		var pe *partition.ColumnError
		if errors.As(err, &ue) {
			e = e.With("column", ue.Column)
		} else if errors.As(err, &ce) {
			e = e.With("column", ce.Column)
		} else if errors.As(err, &pe) {
			msg = "the destination's partition_by does not fit the stream: " + pe.Error()
			e = apierror.Wrap(err, codes.InvalidArgument, errorsv1.ErrorReason_ERROR_REASON_SCHEMA_NOT_SUPPORTED, msg).With("column", pe.Column)
			e.Violations = []apierror.FieldViolation{{Field: "arrow_ipc", Description: msg}}
		}
	case errors.Is(err, compression.ErrSpoolFull):
		e = apierror.Wrap(err, codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_STAGING_FULL,
			"Sluice's space for TAR archives being built is full: try again once running deliveries end").With("scope", "spool")
	case errors.Is(err, staging.ErrFull):
		e = apierror.Wrap(err, codes.ResourceExhausted, errorsv1.ErrorReason_ERROR_REASON_STAGING_FULL,
			"Sluice's staging space is full: try again once running deliveries end; nothing was kept").With("scope", "service")
	case errors.Is(err, context.Canceled):
		e = apierror.Wrap(err, codes.Canceled, errorsv1.ErrorReason_ERROR_REASON_CANCELLED, "the caller cancelled the delivery; nothing was kept")
	case errors.Is(err, context.DeadlineExceeded):
		e = apierror.Wrap(err, codes.DeadlineExceeded, errorsv1.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED, "the delivery ran out of time; nothing was kept")
	default:
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			e = apierror.FromStatus(st.Err()) // a peer's answer, its reason kept
			if e.Reason == errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
				e.Reason = apierror.CodeReason(e.Code)
			}
			break
		}
		if cause := awserror.Classify(err, bucket); cause.Reason != errorsv1.ErrorReason_ERROR_REASON_UNKNOWN {
			code := codes.FailedPrecondition
			if cause.Retryable {
				code = codes.Unavailable
			}
			e = apierror.Wrap(err, code, cause.Reason, cause.Message)
			if cause.MissingPermission != "" {
				e = e.With("missing_permission", cause.MissingPermission)
			}
			break
		}
		e = apierror.Wrap(err, codes.Internal, errorsv1.ErrorReason_ERROR_REASON_INTERNAL, "internal error; the cause is logged on the server")
	}
	return e.With("delivery", delivery)
}

// recorded is the error stored with a failed delivery.
func recorded(e *apierror.Error) *deliveryv1.DeliveryError {
	msg := e.Message
	for _, v := range e.Violations {
		if v.Description != msg {
			msg += "; " + v.Field + ": " + v.Description
		}
	}
	// Bounded: an outcome must be stored whatever an error says (a message
	// that quoted a 3 MiB value left its delivery RECEIVING for good).
	const most = 4 << 10
	if len(msg) > most {
		msg = strings.ToValidUTF8(msg[:most], "") + "..."
	}
	return &deliveryv1.DeliveryError{Reason: apierror.ReasonName(e.Reason), Message: msg, Code: int32(e.Code)}
}

// replayed is the error a second Deliver with the same key answers.
func replayed(d *deliveryv1.Delivery) *apierror.Error {
	code := codes.Code(d.GetError().GetCode())
	if code == codes.OK {
		code = codes.FailedPrecondition
	}
	return apierror.New(code, apierror.ParseReason(d.GetError().GetReason()), d.GetError().GetMessage()).With("delivery", d.GetName())
}
