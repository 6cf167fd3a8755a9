package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"time"
)

// A trigger is a call its owner makes later. Everything a connection has
// the engine do on its behalf (a trigger's function, its condition, its
// middleware, any function its config names) runs with that connection's
// rights: checked when the trigger is registered, checked again each time
// it fires (rights and replicas change), prefixed like the connection's
// own ids, and passed through its listener's middleware.

// Fire runs c, a call made by trigger t (its function, its condition, or
// any function its config names), with the rights of the connection that
// registered t: a connection under a listener policy may reach only what
// it may call or serves itself, through its listener's middleware, and at
// most Config.TriggerFireRate times a second. A trigger of a trusted
// connection, or one a provider was handed by hand, runs c as is.
func (e *Engine) Fire(ctx context.Context, t Trigger, c Call) ([]byte, error) {
	c, err := e.authorizeFire(t, c)
	if err != nil {
		return nil, err
	}
	return e.Trigger(ctx, c)
}

// FireVoid is Fire for a void call.
func (e *Engine) FireVoid(t Trigger, c Call) error {
	c, err := e.authorizeFire(t, c)
	if err != nil {
		return err
	}
	return e.TriggerVoid(c)
}

func (e *Engine) authorizeFire(t Trigger, c Call) (Call, error) {
	s := t.by
	if s == nil || s.grant == nil {
		return c, nil
	}
	if !s.fires.Allow() {
		return c, Errorf(CodeOverloaded, "trigger %q not fired: the triggers of this connection fire at most %g times a second (--trigger-fire-rate)", t.ID, e.cfg.TriggerFireRate)
	}
	c.CallerID = s.id
	if err := e.mayTarget(s, c.FunctionID, false); err != nil {
		return c, Errorf(CodeForbidden, "trigger %q: %s", t.ID, AsError(err).Message)
	}
	return e.throughMiddleware(s.grant, c, nil)
}

// notServedElsewhere refuses a registration of session s (under a policy)
// of an id that no replica on this engine serves but another engine does.
func (e *Engine) notServedElsewhere(s *Session, id string) error {
	if s.grant == nil {
		return nil
	}
	r, ok := e.cfg.Remote.(ElsewhereServer)
	if !ok {
		return nil
	}
	e.mu.RLock()
	_, local := e.functions[id]
	e.mu.RUnlock()
	if local {
		return nil // the local replica set decides (addReplica)
	}
	ctx, cancel := context.WithTimeout(e.hardStop, 2*time.Second)
	defer cancel()
	served, err := r.ServedElsewhere(ctx, id)
	if err != nil {
		return Errorf(CodeUnavailable, "function %q not registered: cannot tell whether another engine serves it: %v", id, err)
	}
	if served {
		return Errorf(CodeConflict, "function %q is served on another engine of the fleet; a connection under a policy never joins a replica set it does not share a policy and identity with (a function_registration_prefix keeps its ids apart)", id)
	}
	return nil
}

// FireAllowed reports whether trigger t may fire now as far as its
// owner's fire rate goes, without using up a fire: a provider that must
// do costly work before it fires (a fleet-wide claim) asks first.
func (e *Engine) FireAllowed(t Trigger) error {
	if s := t.by; s != nil && s.grant != nil && s.fires.Tokens() < 1 {
		return Errorf(CodeOverloaded, "trigger %q not fired: the triggers of this connection fire at most %g times a second (--trigger-fire-rate)", t.ID, e.cfg.TriggerFireRate)
	}
	return nil
}

// canReadThrough refuses a trigger whose type hands its function what a
// function reads (ReadGuard) when g may not call that function.
func (e *Engine) canReadThrough(g *Grant, t Trigger) error {
	e.mu.RLock()
	tt := e.triggerTypes[t.Type]
	e.mu.RUnlock()
	if tt == nil {
		return nil // refused later as an unknown type
	}
	rg, ok := tt.provider.(ReadGuard)
	if !ok {
		return nil
	}
	fn := rg.ReadFunction(t)
	if fn == "" {
		return nil
	}
	if err := g.CanCall(fn, e.functionMetadata(fn)); err != nil {
		return Errorf(CodeForbidden, "trigger %q not registered: a %q trigger gets what %s gives, and this connection may not call %s (%s)", t.ID, t.Type, fn, fn, AsError(err).Message)
	}
	return nil
}

// mayTarget decides whether session s (under a policy) may have the engine
// call fn on its behalf: a function it serves itself, or one it may call.
// With unknownOK, an id no replica on this engine serves yet passes: the
// check then happens when the trigger fires.
func (e *Engine) mayTarget(s *Session, fn string, unknownOK bool) error {
	e.mu.RLock()
	f := e.functions[fn]
	serves := f != nil && slices.Contains(f.replicas, s)
	var metadata []json.RawMessage
	if f != nil {
		metadata = f.replicaMetadata()
	}
	e.mu.RUnlock()
	if serves || (f == nil && unknownOK) {
		return nil
	}
	return s.grant.CanCall(fn, metadata)
}

// throughMiddleware marks c as made under g and, when g's listener has a
// middleware, turns it into the middleware's call with the target, the
// payload and the connection's context. The engine's own built-in
// functions (engine::…) bypass it, as in iii: re-invoked by the
// middleware's worker, their filtered answers would lose the caller's
// rights. action, if set, is the caller's action ({"type":"enqueue",…}).
func (e *Engine) throughMiddleware(g *Grant, c Call, action json.RawMessage) (Call, error) {
	c.Grant = g
	mw := g.access.MiddlewareFunctionID
	if mw == "" || matchAny(infrastructure, c.FunctionID) || e.engineBuiltin(c.FunctionID) {
		return c, nil
	}
	payload := c.Payload
	if len(payload) == 0 {
		payload = []byte("null")
	}
	p, err := json.Marshal(MiddlewareInput{FunctionID: c.FunctionID, Payload: payload, Context: g.result.Context, Action: action})
	if err != nil {
		return c, Errorf(CodeInvalidArgument, "call of %q: %v", c.FunctionID, err)
	}
	c.FunctionID, c.Payload = mw, p
	return c, nil
}

// engineBuiltin reports whether id is one of the engine's own built-in
// functions (engine::…, not a module's).
func (e *Engine) engineBuiltin(id string) bool {
	if !strings.HasPrefix(id, ReservedPrefix) {
		return false
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	f := e.functions[id]
	return f != nil && f.builtin != nil
}

// triggerFunctionIDs rewrites and lists the function ids a trigger names:
// its function_id, and every top-level config field whose name ends in
// function_id (a string) or function_ids (an array of strings), which is
// how iii's and Trine's trigger types name conditions and middleware. Each
// takes prefix. A field of another shape is invalid_argument.
func triggerFunctionIDs(t *Trigger, prefix string) ([]string, error) {
	t.FunctionID = prefix + t.FunctionID
	ids := []string{t.FunctionID}
	cfg := bytes.TrimSpace(t.Config)
	if len(cfg) == 0 || cfg[0] != '{' {
		return ids, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(cfg, &fields); err != nil {
		return nil, Errorf(CodeInvalidArgument, "trigger %q config: %v", t.ID, err)
	}
	changed := false
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := fields[k]
		switch {
		case strings.HasSuffix(k, "function_id"):
			if string(v) == "null" {
				continue
			}
			var id string
			if err := json.Unmarshal(v, &id); err != nil {
				return nil, Errorf(CodeInvalidArgument, "trigger %q config: %s must be a function id string", t.ID, k)
			}
			if id == "" {
				continue
			}
			id = prefix + id
			ids = append(ids, id)
			fields[k], _ = json.Marshal(id)
		case strings.HasSuffix(k, "function_ids"):
			if string(v) == "null" {
				continue
			}
			var list []string
			if err := json.Unmarshal(v, &list); err != nil {
				return nil, Errorf(CodeInvalidArgument, "trigger %q config: %s must be an array of function id strings", t.ID, k)
			}
			for i := range list {
				list[i] = prefix + list[i]
			}
			ids = append(ids, list...)
			fields[k], _ = json.Marshal(list)
		default:
			continue
		}
		changed = true
	}
	if changed && prefix != "" {
		b, err := json.Marshal(fields)
		if err != nil {
			return nil, Errorf(CodeInvalidArgument, "trigger %q config: %v", t.ID, err)
		}
		t.Config = b
	}
	for _, id := range ids {
		if err := ValidateID("function id", id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}
