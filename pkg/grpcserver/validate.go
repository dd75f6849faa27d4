package grpcserver

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/validate"
)

// checkRequest answers InvalidArgument for a request that did not decode or
// breaks the bounds every field is held to.
func checkRequest(req any) error {
	if err := decodeError(req); err != nil {
		var v validate.Violations
		v.Add("", "the request is not a valid %s message: %s", messageName(req), strings.TrimPrefix(err.Error(), "proto: "))
		return v.Err()
	}
	m, ok := req.(proto.Message)
	if !ok {
		return apierror.New(codes.Internal, errorsv1.ErrorReason_ERROR_REASON_INTERNAL, "request is not a protobuf message")
	}
	var v validate.Violations
	validate.Bounds(&v, m)
	return v.Err()
}

func messageName(req any) string {
	if m, ok := req.(proto.Message); ok {
		return string(m.ProtoReflect().Descriptor().FullName())
	}
	return "request"
}

func validateUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func validateStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, &checkedStream{ServerStream: ss})
}

// checkedStream checks each message a stream receives as unary requests
// are checked.
type checkedStream struct{ grpc.ServerStream }

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return checkRequest(m)
}
