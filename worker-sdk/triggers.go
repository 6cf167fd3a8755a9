package trine

import (
	"context"
	"encoding/json"

	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

// Trigger binds an event source (a trigger type) to a function. Config and
// Metadata are marshalled to JSON when registering; a provider receives
// them as json.RawMessage. Metadata (optional) reaches the function with
// every call the trigger makes (Invocation(ctx).Metadata).
type Trigger struct {
	ID         string
	Type       string
	FunctionID string
	Config     any
	Metadata   any
}

// TriggerHandler serves a trigger type provided by this worker: the engine
// hands it each trigger of that type as it is registered and removed.
// RegisterTrigger refuses a bad config by returning an error, which reaches
// the worker that registered the trigger.
type TriggerHandler interface {
	RegisterTrigger(ctx context.Context, t Trigger) error
	UnregisterTrigger(ctx context.Context, t Trigger) error
}

type triggerType struct {
	id, description string
	handler         TriggerHandler
}

func (t *triggerType) frame(requestID string) *trinev1.ConnectRequest {
	return &trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_RegisterTriggerType{RegisterTriggerType: &trinev1.RegisterTriggerType{
		RequestId: requestID, Id: t.id, Description: t.description,
	}}}
}

type trigger struct {
	t                Trigger
	config, metadata []byte
}

func (t *trigger) frame(requestID string) *trinev1.ConnectRequest {
	return &trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_RegisterTrigger{RegisterTrigger: &trinev1.RegisterTrigger{
		RequestId: requestID,
		Trigger:   &trinev1.Trigger{Id: t.t.ID, Type: t.t.Type, FunctionId: t.t.FunctionID, Config: t.config, Metadata: t.metadata},
	}}}
}

// RegisterTrigger registers a trigger owned by this worker; the engine
// removes it when the worker leaves, and replays restore it. The error says
// why the engine or the type's provider refused it (unknown type, bad
// config, id owned by another worker); a refused trigger is forgotten.
func (w *Worker) RegisterTrigger(ctx context.Context, t Trigger) error {
	cfg, err := marshal(t.Config)
	if err != nil {
		return errorf(CodeInvalidArgument, "trigger %q config: %v", t.ID, err)
	}
	var md []byte
	if t.Metadata != nil {
		if md, err = marshal(t.Metadata); err != nil {
			return errorf(CodeInvalidArgument, "trigger %q metadata: %v", t.ID, err)
		}
	}
	tr := &trigger{t: t, config: cfg, metadata: md}
	w.mu.Lock()
	w.triggers[t.ID] = tr
	w.mu.Unlock()
	return w.register(ctx, tr.frame, func() { w.forgetTrigger(t.ID, tr) })
}

// UnregisterTrigger removes a trigger this worker registered.
func (w *Worker) UnregisterTrigger(ctx context.Context, id string) error {
	w.mu.Lock()
	delete(w.triggers, id)
	w.mu.Unlock()
	return w.register(ctx, func(requestID string) *trinev1.ConnectRequest {
		return &trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_UnregisterTrigger{UnregisterTrigger: &trinev1.UnregisterTrigger{
			RequestId: requestID, Id: id,
		}}}
	}, nil)
}

func (w *Worker) forgetTrigger(id string, t *trigger) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.triggers[id] == t {
		delete(w.triggers, id)
	}
}

// RegisterTriggerType makes this worker the provider of trigger type id.
func (w *Worker) RegisterTriggerType(ctx context.Context, id, description string, h TriggerHandler) error {
	if h == nil {
		return errorf(CodeInvalidArgument, "trigger type %q has no handler", id)
	}
	tt := &triggerType{id: id, description: description, handler: h}
	w.mu.Lock()
	w.triggerTypes[id] = tt
	w.mu.Unlock()
	return w.register(ctx, tt.frame, func() { w.forgetTriggerType(id, tt) })
}

// UnregisterTriggerType stops providing trigger type id.
func (w *Worker) UnregisterTriggerType(ctx context.Context, id string) error {
	w.mu.Lock()
	delete(w.triggerTypes, id)
	w.mu.Unlock()
	return w.register(ctx, func(requestID string) *trinev1.ConnectRequest {
		return &trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_UnregisterTriggerType{UnregisterTriggerType: &trinev1.UnregisterTriggerType{
			RequestId: requestID, Id: id,
		}}}
	}, nil)
}

func (w *Worker) forgetTriggerType(id string, tt *triggerType) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.triggerTypes[id] == tt {
		delete(w.triggerTypes, id)
	}
}

// configureTrigger hands a TriggerConfig to the local provider and acks it.
func (w *Worker) configureTrigger(s *session, c *trinev1.TriggerConfig) {
	pt := c.GetTrigger()
	t := Trigger{ID: pt.GetId(), Type: pt.GetType(), FunctionID: pt.GetFunctionId(), Config: json.RawMessage(pt.GetConfig())}
	if md := pt.GetMetadata(); len(md) > 0 {
		t.Metadata = json.RawMessage(md)
	}
	w.mu.Lock()
	tt := w.triggerTypes[t.Type]
	w.mu.Unlock()
	var err error
	switch {
	case tt == nil:
		err = errorf(CodeTriggerTypeNotFound, "this worker does not provide trigger type %q", t.Type)
	case c.GetRemove():
		err = safeTrigger(func() error { return tt.handler.UnregisterTrigger(s.ctx, t) })
	default:
		err = safeTrigger(func() error { return tt.handler.RegisterTrigger(s.ctx, t) })
	}
	ack := &trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_Ack{Ack: &trinev1.Ack{RequestId: c.GetRequestId(), Error: toProto(err)}}}
	_ = s.send(s.ctx, ack)
}

func safeTrigger(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errorf(CodeHandlerError, "trigger handler panicked: %v", r)
		}
	}()
	if err = f(); err != nil {
		if e := asError(err); e.Code == CodeHandlerError {
			return errorf(CodeInvalidArgument, "%s", e.Message)
		}
	}
	return err
}
