package engine

import (
	"context"
	"encoding/json"

	"github.com/trinehq/trine/codes"
)

// Enqueuer takes a call into a named queue: the queue module is one, and
// sets itself on the engine when it registers (SetEnqueuer). The engine
// knows no queue function; it hands enqueues to the Enqueuer.
type Enqueuer interface {
	// Enqueue queues c (its FunctionID, Payload, Metadata) on queue on
	// behalf of c.CallerID under c.Grant, and returns the receipt.
	Enqueue(ctx context.Context, queue string, c Call) ([]byte, error)
}

// SetEnqueuer sets what takes the workers' enqueues; nil: none, and
// enqueues fail with enqueue_error.
func (e *Engine) SetEnqueuer(q Enqueuer) {
	e.mu.Lock()
	e.enqueuer = q
	e.mu.Unlock()
}

// Enqueue is the worker's own enqueue action: the call c goes to queue
// through the engine's Enqueuer once the session may call c's function.
// With a listener middleware, the middleware gets the call with its action
// ({"type":"enqueue","queue":…}, as in iii) and enqueues it itself.
func (s *Session) Enqueue(ctx context.Context, queue string, c Call) ([]byte, error) {
	if err := ValidateID("function id", c.FunctionID); err != nil {
		return nil, err
	}
	if err := s.e.CanCall(s.grant, c.FunctionID); err != nil {
		return nil, err
	}
	if err := vetTraceContext(&c); err != nil {
		return nil, err
	}
	n := len(c.Payload)
	if err := s.admit(c.FunctionID, n); err != nil {
		return nil, err
	}
	defer s.release(n)
	if g := s.grant; g != nil && g.access.MiddlewareFunctionID != "" {
		action, _ := json.Marshal(map[string]string{"type": "enqueue", "queue": queue})
		mc, err := s.e.throughMiddleware(g, c, action)
		if err != nil {
			return nil, err
		}
		mc.CallerID = s.id
		return s.e.Trigger(ctx, mc)
	}
	s.e.mu.RLock()
	q := s.e.enqueuer
	var f *formats
	if fn := s.e.functions[c.FunctionID]; fn != nil {
		f = fn.formats
	}
	s.e.mu.RUnlock()
	// A job whose payload breaks the request_format of a function served
	// here would fail on every try: refuse it now. The run checks again,
	// wherever the function is served by then.
	if err := f.checkPayload(&c); err != nil {
		return nil, err
	}
	if q == nil {
		return nil, Errorf(codes.EnqueueError, "this engine has no queues (they need JetStream)")
	}
	return q.Enqueue(ctx, queue, Call{FunctionID: c.FunctionID, Payload: orNullJSON(c.Payload), Metadata: c.Metadata, CallerID: s.id, Grant: s.grant, Traceparent: c.Traceparent})
}

func orNullJSON(p []byte) json.RawMessage {
	if len(p) == 0 {
		return json.RawMessage("null")
	}
	return p
}
