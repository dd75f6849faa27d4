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

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

// Domain is the ErrorInfo domain of every Sluice error.
const Domain = "sluice.dev"

// Stable reasons for ErrorInfo. Callers switch on these, never on messages.
const (
	ReasonInvalidArgument    = "INVALID_ARGUMENT"
	ReasonNotFound           = "NOT_FOUND"
	ReasonAlreadyExists      = "ALREADY_EXISTS"
	ReasonEtagMismatch       = "ETAG_MISMATCH"
	ReasonFailedPrecondition = "FAILED_PRECONDITION"
	ReasonUnauthenticated    = "UNAUTHENTICATED"
	ReasonPermissionDenied   = "PERMISSION_DENIED"
	ReasonNotImplemented     = "NOT_IMPLEMENTED"
	ReasonInternal           = "INTERNAL"
	ReasonUnavailable        = "UNAVAILABLE"
)

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
	Reason     string
	Message    string
	Metadata   map[string]string
	Violations []FieldViolation
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
func New(code codes.Code, reason, message string) *Error {
	return &Error{Code: code, Reason: reason, Message: message}
}

// Wrap makes an Error that keeps cause for errors.Is and for logs. The cause
// is never sent to the caller.
func Wrap(cause error, code codes.Code, reason, message string) *Error {
	return &Error{Code: code, Reason: reason, Message: message, cause: cause}
}

// With adds one metadata entry and returns e.
func (e *Error) With(key, value string) *Error {
	if e.Metadata == nil {
		e.Metadata = map[string]string{}
	}
	e.Metadata[key] = value
	return e
}

// NotFound says that a resource does not exist or is not the caller's.
func NotFound(resource string) *Error {
	return Wrap(ErrNotFound, codes.NotFound, ReasonNotFound,
		fmt.Sprintf("%s not found", resource)).With("resource", resource)
}

// Unimplemented says which later work will bring a method.
func Unimplemented(method, plan string) *Error {
	return New(codes.Unimplemented, ReasonNotImplemented,
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
		Reason:     ReasonInvalidArgument,
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
		e = New(codes.Canceled, "CANCELLED", "the request was cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		e = New(codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "the request ran out of time")
	case errors.Is(err, ErrNotFound):
		e = New(codes.NotFound, ReasonNotFound, "not found")
	case errors.Is(err, ErrAlreadyExists):
		e = New(codes.AlreadyExists, ReasonAlreadyExists, "already exists")
	case errors.Is(err, ErrEtagMismatch):
		e = New(codes.Aborted, ReasonEtagMismatch, "the resource changed since it was read; get it again and retry with its etag")
	case errors.Is(err, ErrFailedPrecondition):
		e = New(codes.FailedPrecondition, ReasonFailedPrecondition, "the resource is not in a state that allows this")
	default:
		logger.ErrorContext(ctx, "internal error", slog.String("error", err.Error()))
		e = New(codes.Internal, ReasonInternal, "internal error; the cause is logged on the server")
	}
	if e.Code == codes.Internal && e.cause != nil {
		logger.ErrorContext(ctx, "internal error", slog.String("error", e.cause.Error()))
	}
	return e.GRPCStatus().Err()
}

// GRPCStatus builds the status with ErrorInfo and, when there are
// violations, BadRequest. It lets status.FromError recognise an *Error.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.Message)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: e.Reason, Domain: Domain, Metadata: e.Metadata}}
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
