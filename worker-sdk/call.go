package trine

import (
	"context"
	"encoding/json"
	"time"

	"github.com/trinehq/trine/internal/tracing"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

// Trigger calls function id with payload (marshalled to JSON; a
// json.RawMessage is sent as is) and returns its JSON result. Without a
// deadline on ctx the call is bounded by WithCallTimeout; the engine
// enforces the same deadline and cancels the callee when it passes or when
// ctx is cancelled. If the worker is not connected, Trigger waits for the
// connection within the same bound.
func (w *Worker) Trigger(ctx context.Context, id string, payload any) (out json.RawMessage, err error) {
	ctx, cancel := w.callContext(ctx)
	defer cancel()
	ctx, span := w.startCall(ctx, id)
	defer func() { endSpan(span, err) }()
	s, data, err := w.prepareCall(ctx, id, payload)
	if err != nil {
		return nil, err
	}
	callID := w.newID()
	ch, err := s.expect(callID)
	if err != nil {
		return nil, err
	}
	if err := s.send(ctx, callFrame(ctx, callID, id, data, trinev1.Action_ACTION_UNSPECIFIED)); err != nil {
		s.forget(callID)
		return nil, err
	}
	sent := time.Now()
	select {
	case r := <-ch:
		return r.value, r.err
	case <-ctx.Done():
		if s.forget(callID) {
			cancel := &trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_Cancel{Cancel: &trinev1.Cancel{Id: callID}}}
			s.trySend(cancel) // best effort; the engine also enforces the deadline
		}
		e := asError(ctx.Err())
		return nil, errorf(e.Code, "trigger %s: %s while waiting for its answer (sent %s ago)", id, e.Message, time.Since(sent).Round(time.Millisecond))
	}
}

// TriggerVoid starts function id and returns as soon as the call is sent: no
// result or error ever comes back. It fails only if the payload does not
// marshal or the worker cannot reach the engine within ctx (or
// WithCallTimeout).
func (w *Worker) TriggerVoid(ctx context.Context, id string, payload any) (err error) {
	ctx, cancel := w.callContext(ctx)
	defer cancel()
	ctx, span := w.startCall(ctx, id)
	defer func() { endSpan(span, err) }()
	s, data, err := w.prepareCall(ctx, id, payload)
	if err != nil {
		return err
	}
	return s.send(ctx, callFrame(ctx, w.newID(), id, data, trinev1.Action_ACTION_VOID))
}

// callContext bounds ctx by the call timeout unless it has a deadline.
func (w *Worker) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, w.opts.callTimeout)
}

// prepareCall encodes the payload and waits for a live session.
func (w *Worker) prepareCall(ctx context.Context, id string, payload any) (*session, []byte, error) {
	data, err := marshal(payload)
	if err != nil {
		return nil, nil, errorf(CodeInvalidArgument, "payload for %q: %v", id, err)
	}
	if b, ok := ctx.Value(baggageKey{}).(string); ok && len(b) > MaxBaggageBytes {
		return nil, nil, errorf(CodeInvalidArgument, "call of %q: the baggage is %d bytes, the limit is %d", id, len(b), MaxBaggageBytes)
	}
	s, err := w.liveSession(ctx)
	if err != nil {
		return nil, nil, err
	}
	return s, data, nil
}

func callFrame(ctx context.Context, callID, fnID string, data []byte, action trinev1.Action) *trinev1.ConnectRequest {
	c := &trinev1.Call{CallId: callID, FunctionId: fnID, Payload: data, Action: action}
	if inv, ok := Invocation(ctx); ok { // a call made while serving one continues its trace
		c.Traceparent, c.Baggage = inv.Traceparent, inv.Baggage
	}
	if tp := tracing.FromContext(ctx); tp != "" { // the call's own span, or the caller's
		c.Traceparent = tp
	}
	if b, ok := ctx.Value(baggageKey{}).(string); ok {
		c.Baggage = b
	}
	if d, ok := ctx.Deadline(); ok {
		c.TimeoutMs = max(1, time.Until(d).Milliseconds())
	}
	return &trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_Call{Call: c}}
}

type baggageKey struct{}

// MaxBaggageBytes is the W3C limit on a baggage header, which the engine
// enforces.
const MaxBaggageBytes = 8192

// ContextWithBaggage returns a context whose calls (Trigger, TriggerVoid,
// Call and the module helpers) carry the W3C baggage header b
// ("key=value,key2=value2"); the callee reads it with
// engine::baggage::get or InvocationInfo.Baggage. Without it, a call made
// from a handler carries the baggage (and traceparent) of the invocation
// it serves, so baggage flows down a chain of calls on its own. A header
// over MaxBaggageBytes fails the call with invalid_argument.
func ContextWithBaggage(ctx context.Context, b string) context.Context {
	return context.WithValue(ctx, baggageKey{}, b)
}

// marshal encodes v as JSON; a json.RawMessage is checked and sent as is.
func marshal(v any) ([]byte, error) {
	if raw, ok := v.(json.RawMessage); ok {
		if len(raw) == 0 {
			return nil, nil
		}
		if !json.Valid(raw) {
			return nil, errorf(CodeInvalidArgument, "not valid JSON")
		}
		return raw, nil
	}
	return json.Marshal(v)
}
