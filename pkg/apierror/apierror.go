// Package apierror is how Sluice's services say what went wrong: sentinel
// errors for stores and handlers, errors that carry a stable reason and field
// violations, and the one function that turns any of them into a gRPC status
// with google.rpc details.
package apierror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
)

// Domain is the ErrorInfo domain of every Sluice error.
const Domain = "sluice.dev"

// Reason is a stable reason, declared once in the API (ErrorReason in
// proto/sluice/errors/v1) so that buf breaking guards it.
type Reason = errorsv1.ErrorReason

const reasonPrefix = "ERROR_REASON_"

// ReasonName answers a reason as it goes on the wire: its name without the
// ERROR_REASON_ prefix, e.g. INVALID_BUCKET_NAME.
func ReasonName(r Reason) string { return strings.TrimPrefix(r.String(), reasonPrefix) }

// ParseReason answers the reason a wire name stands for, and
// ERROR_REASON_UNSPECIFIED for a name it does not know (a newer peer's).
func ParseReason(name string) Reason {
	return Reason(errorsv1.ErrorReason_value[reasonPrefix+name])
}

// Sentinel errors returned by stores and handlers; Status maps them with
// errors.Is, so wrapping them with context keeps their meaning.
var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrEtagMismatch       = errors.New("etag mismatch")
	ErrFailedPrecondition = errors.New("failed precondition")
)

// Error is an error a caller can act on: a code, a stable reason, a message
// safe to show, and optional metadata and field violations.
type Error struct {
	Code       codes.Code
	Reason     Reason
	Message    string
	Metadata   map[string]string
	Violations []FieldViolation
	// RetryAfter, when set, goes out as RetryInfo: how long to wait before
	// trying again (a limit that frees itself).
	RetryAfter time.Duration
	cause      error
}

// FieldViolation names a request field and what is wrong with it.
type FieldViolation struct {
	// Field is the path as in the request, e.g. `credential.bucket`.
	Field string
	// Description says which rule the value breaks.
	Description string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	for _, v := range e.Violations {
		fmt.Fprintf(&b, "; %s: %s", v.Field, v.Description)
	}
	if e.cause != nil {
		fmt.Fprintf(&b, ": %v", e.cause)
	}
	return b.String()
}

// Unwrap lets errors.Is see the sentinel or cause underneath.
func (e *Error) Unwrap() error { return e.cause }

// New makes an Error with a stable reason.
func New(code codes.Code, reason Reason, message string) *Error {
	return &Error{Code: code, Reason: reason, Message: message}
}

// Wrap makes an Error that keeps cause for errors.Is and for logs. The cause
// is never sent to the caller.
func Wrap(cause error, code codes.Code, reason Reason, message string) *Error {
	return &Error{Code: code, Reason: reason, Message: message, cause: cause}
}

// With returns a copy of e with one more metadata entry. e itself is not
// changed: an error value may be shared (a sentinel, one wrapped in
// several places), and adding to it would add everywhere.
func (e *Error) With(key, value string) *Error {
	c := *e
	c.Metadata = make(map[string]string, len(e.Metadata)+1)
	for k, v := range e.Metadata {
		c.Metadata[k] = v
	}
	c.Metadata[key] = value
	return &c
}

// NotFound says that a resource does not exist or is not the caller's.
func NotFound(resource string) *Error {
	return Wrap(ErrNotFound, codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND,
		fmt.Sprintf("%s not found", resource)).With("resource", resource)
}

// Unimplemented says which later work will bring a method.
func Unimplemented(method, plan string) *Error {
	return New(codes.Unimplemented, errorsv1.ErrorReason_ERROR_REASON_NOT_IMPLEMENTED,
		fmt.Sprintf("%s is not implemented yet: %s", method, plan)).With("method", method)
}

// Violations collects field violations while a handler validates a request.
type Violations struct {
	list []FieldViolation
}

// Add records that field breaks the rule in description (fmt style).
func (v *Violations) Add(field, format string, args ...any) {
	v.list = append(v.list, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// Err answers InvalidArgument with every violation recorded, or nil.
func (v *Violations) Err() error {
	if len(v.list) == 0 {
		return nil
	}
	return &Error{
		Code:       codes.InvalidArgument,
		Reason:     errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT,
		Message:    "the request is invalid",
		Violations: v.list,
	}
}

// Len reports how many violations were recorded.
func (v *Violations) Len() int { return len(v.list) }

// Status converts any error into a gRPC status error with details. Errors
// that already are statuses pass through. Unknown errors become Internal
// with a public message while their cause goes to the log.
func Status(ctx context.Context, logger *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if _, isStatus := err.(interface{ GRPCStatus() *status.Status }); isStatus && !errors.As(err, &e) {
		return err
	}
	switch {
	case errors.As(err, &e):
	case errors.Is(err, context.Canceled):
		e = New(codes.Canceled, errorsv1.ErrorReason_ERROR_REASON_CANCELLED, "the request was cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		e = New(codes.DeadlineExceeded, errorsv1.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED, "the request ran out of time")
	case errors.Is(err, ErrNotFound):
		e = New(codes.NotFound, errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND, "not found")
	case errors.Is(err, ErrAlreadyExists):
		e = New(codes.AlreadyExists, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS, "already exists")
	case errors.Is(err, ErrEtagMismatch):
		e = New(codes.Aborted, errorsv1.ErrorReason_ERROR_REASON_ETAG_MISMATCH, "the resource changed since it was read; get it again and retry with its etag")
	case errors.Is(err, ErrFailedPrecondition):
		e = New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION, "the resource is not in a state that allows this")
	default:
		logger.ErrorContext(ctx, "internal error", slog.String("error", err.Error()))
		e = New(codes.Internal, errorsv1.ErrorReason_ERROR_REASON_INTERNAL, "internal error; the cause is logged on the server")
	}
	if e.Code == codes.Internal && e.cause != nil {
		logger.ErrorContext(ctx, "internal error", slog.String("error", e.cause.Error()))
	}
	return e.GRPCStatus().Err()
}

// GRPCStatus builds the status with ErrorInfo and, when there are
// violations, BadRequest. It lets status.FromError recognise an *Error.
func (e *Error) GRPCStatus() *status.Status {
	// Bounded: a status travels in HTTP/2 trailers, and one over the
	// peer's header limit arrives as another error, without its details.
	msg := e.Message
	const most = 4 << 10
	if len(msg) > most {
		msg = strings.ToValidUTF8(msg[:most], "") + "..."
	}
	st := status.New(e.Code, msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: ReasonName(e.Reason), Domain: Domain, Metadata: e.Metadata}}
	if e.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
	}
	if len(e.Violations) > 0 {
		br := &errdetails.BadRequest{}
		for _, v := range e.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field: v.Field, Description: v.Description,
			})
		}
		details = append(details, br)
	}
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		// Details that cannot be marshalled must not hide the error itself.
		return st
	}
	return withDetails
}

// codeReasons are the reasons that stand for statuses which carry no
// ErrorInfo (gRPC's own, a proxy's).
var codeReasons = map[codes.Code]Reason{
	codes.Canceled:           errorsv1.ErrorReason_ERROR_REASON_CANCELLED,
	codes.DeadlineExceeded:   errorsv1.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED,
	codes.Unavailable:        errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE,
	codes.ResourceExhausted:  errorsv1.ErrorReason_ERROR_REASON_RESOURCE_EXHAUSTED,
	codes.InvalidArgument:    errorsv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT,
	codes.NotFound:           errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND,
	codes.AlreadyExists:      errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS,
	codes.PermissionDenied:   errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED,
	codes.Unauthenticated:    errorsv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED,
	codes.FailedPrecondition: errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
	codes.Unimplemented:      errorsv1.ErrorReason_ERROR_REASON_NOT_IMPLEMENTED,
}

// CodeReason answers the reason that stands for a status code, for
// answers that carry no reason of their own: INTERNAL when none fits.
func CodeReason(c codes.Code) Reason {
	if r, ok := codeReasons[c]; ok {
		return r
	}
	return errorsv1.ErrorReason_ERROR_REASON_INTERNAL
}

// FromStatus decodes what a Sluice service answered: the code, the
// message, the ErrorInfo reason and metadata, and the BadRequest field
// violations. Reason stays ERROR_REASON_UNSPECIFIED when no Sluice
// ErrorInfo came (gRPC's own statuses, a proxy's) or it names a reason this
// build does not know; an error that is no status reads as Unknown, and nil
// answers nil. The clients of Sluice (services calling each other, the
// CLI, tests) read errors with it.
func FromStatus(err error) *Error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	e := &Error{Code: st.Code(), Message: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == Domain {
				e.Reason = ParseReason(d.GetReason())
			}
			for k, v := range d.GetMetadata() {
				e = e.With(k, v)
			}
		case *errdetails.RetryInfo:
			e.RetryAfter = d.GetRetryDelay().AsDuration()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.Violations = append(e.Violations, FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	return e
}

// Fields answers the field violations as field path to description.
func (e *Error) Fields() map[string]string {
	out := make(map[string]string, len(e.Violations))
	for _, v := range e.Violations {
		out[v.Field] = v.Description
	}
	return out
}
