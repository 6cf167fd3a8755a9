package grpcserver

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trinehq/trine/engine"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of Trine errors; the
// ErrorInfo reason is the Trine error code.
const ErrorDomain = "trine.dev"

var grpcCodes = map[engine.Code]codes.Code{
	engine.CodeFunctionNotFound:    codes.NotFound,
	engine.CodeTriggerTypeNotFound: codes.NotFound,
	engine.CodeTriggerNotFound:     codes.NotFound,
	engine.CodeInvalidArgument:     codes.InvalidArgument,
	engine.CodeDeadlineExceeded:    codes.DeadlineExceeded,
	engine.CodeCancelled:           codes.Canceled,
	engine.CodeWorkerDisconnected:  codes.Unavailable,
	engine.CodeUnavailable:         codes.Unavailable,
	engine.CodeHandlerError:        codes.Unknown,
	engine.CodeUnauthorized:        codes.Unauthenticated,
	engine.CodeForbidden:           codes.PermissionDenied,
	engine.CodeOverloaded:          codes.ResourceExhausted,
	engine.CodeMessageTooLarge:     codes.ResourceExhausted,
	engine.CodeValueTooLarge:       codes.ResourceExhausted,
	engine.CodeEnqueueError:        codes.FailedPrecondition,
	engine.CodeConflict:            codes.Aborted,
	engine.CodeInternal:            codes.Internal,
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
		c = codes.Unknown
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
		code = engine.CodeHandlerError
	}
	return &engine.Error{Code: code, Message: e.GetMessage(), Stacktrace: e.GetStacktrace()}
}
