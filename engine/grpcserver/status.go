package grpcserver

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of Trine errors; the
// ErrorInfo reason is the Trine error code.
const ErrorDomain = "trine.dev"

var grpcCodes = map[engine.Code]grpccodes.Code{
	codes.FunctionNotFound:    grpccodes.NotFound,
	codes.TriggerTypeNotFound: grpccodes.NotFound,
	codes.TriggerNotFound:     grpccodes.NotFound,
	codes.InvalidArgument:     grpccodes.InvalidArgument,
	codes.DeadlineExceeded:    grpccodes.DeadlineExceeded,
	codes.Cancelled:           grpccodes.Canceled,
	codes.WorkerDisconnected:  grpccodes.Unavailable,
	codes.Unavailable:         grpccodes.Unavailable,
	codes.HandlerError:        grpccodes.Unknown,
	codes.Unauthorized:        grpccodes.Unauthenticated,
	codes.Forbidden:           grpccodes.PermissionDenied,
	codes.Overloaded:          grpccodes.ResourceExhausted,
	codes.MessageTooLarge:     grpccodes.ResourceExhausted,
	codes.ValueTooLarge:       grpccodes.ResourceExhausted,
	codes.EnqueueError:        grpccodes.FailedPrecondition,
	codes.Conflict:            grpccodes.Aborted,
	codes.Internal:            grpccodes.Internal,
}

// toStatus is the one place engine errors become gRPC statuses. The Trine
// code travels as the reason of a google.rpc.ErrorInfo detail.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	e := engine.AsError(err)
	c, ok := grpcCodes[e.Code]
	if !ok {
		c = grpccodes.Unknown
	}
	st := status.New(c, e.Message)
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: string(e.Code), Domain: ErrorDomain}); derr == nil {
		st = d
	}
	return st.Err()
}

// toProto converts an error for a frame on the Connect stream.
func toProto(err error) *trinev1.Error {
	if err == nil {
		return nil
	}
	e := engine.AsError(err)
	return &trinev1.Error{Code: string(e.Code), Message: e.Message, Stacktrace: e.Stacktrace}
}

// fromProto converts an error received on the Connect stream.
func fromProto(e *trinev1.Error) *engine.Error {
	if e == nil {
		return nil
	}
	code := engine.Code(e.GetCode())
	if code == "" {
		code = codes.HandlerError
	}
	return &engine.Error{Code: code, Message: e.GetMessage(), Stacktrace: e.GetStacktrace()}
}
