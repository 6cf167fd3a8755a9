package trine_test

import (
	"testing"

	"github.com/trinehq/trine/engine"
	trine "github.com/trinehq/trine/worker-sdk"
)

// TestCodesMatchEngine: the SDK cannot import the engine, so it repeats the
// error codes; this keeps the two lists identical.
func TestCodesMatchEngine(t *testing.T) {
	t.Parallel()
	pairs := []struct {
		sdk trine.Code
		eng engine.Code
	}{
		{trine.CodeFunctionNotFound, engine.CodeFunctionNotFound},
		{trine.CodeTriggerTypeNotFound, engine.CodeTriggerTypeNotFound},
		{trine.CodeTriggerNotFound, engine.CodeTriggerNotFound},
		{trine.CodeInvalidArgument, engine.CodeInvalidArgument},
		{trine.CodeDeadlineExceeded, engine.CodeDeadlineExceeded},
		{trine.CodeCancelled, engine.CodeCancelled},
		{trine.CodeWorkerDisconnected, engine.CodeWorkerDisconnected},
		{trine.CodeHandlerError, engine.CodeHandlerError},
		{trine.CodeUnauthorized, engine.CodeUnauthorized},
		{trine.CodeForbidden, engine.CodeForbidden},
		{trine.CodeOverloaded, engine.CodeOverloaded},
		{trine.CodeConflict, engine.CodeConflict},
		{trine.CodeMessageTooLarge, engine.CodeMessageTooLarge},
		{trine.CodeUnavailable, engine.CodeUnavailable},
		{trine.CodeInternal, engine.CodeInternal},
		{trine.CodeValueTooLarge, engine.CodeValueTooLarge},
		{trine.CodeEnqueueError, engine.CodeEnqueueError},
	}
	for _, p := range pairs {
		if string(p.sdk) != string(p.eng) {
			t.Errorf("SDK code %q != engine code %q", p.sdk, p.eng)
		}
	}
}
