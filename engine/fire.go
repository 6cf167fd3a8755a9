package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/trinehq/trine/codes"
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
	if !s.acct.fires.Allow() {
		return c, Errorf(codes.Overloaded, "trigger %q not fired: the triggers of this connection fire at most %g times a second (--trigger-fire-rate)", t.ID, e.cfg.TriggerFireRate)
	}
	c.CallerID = s.id
	if err := e.mayTarget(s, c.FunctionID, false); err != nil {
		return c, Errorf(codes.Forbidden, "trigger %q: %s", t.ID, AsError(err).Message)
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
		return Errorf(codes.Unavailable, "function %q not registered: cannot tell whether another engine serves it: %v", id, err)
	}
	if served {
		return Errorf(codes.Conflict, "function %q is served on another engine of the fleet; a connection under a policy never joins a replica set it does not share a policy and identity with (a function_registration_prefix keeps its ids apart)", id)
	}
	return nil
}

// Trusted reports whether t was registered by a trusted connection (or
// handed to its provider directly), not by one under a listener policy.
func (t Trigger) Trusted() bool { return t.by == nil || t.by.grant == nil }

// TakeBack removes trigger t, registered by a connection under a listener
// policy, from the engine without telling its provider: the provider
// gives what t held (an http route) to a trusted worker's trigger.
func (e *Engine) TakeBack(t Trigger) {
	if t.Trusted() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := e.triggers[t.ID]
	if cur == nil || cur.owner != t.by {
		return
	}
	delete(e.triggers, t.ID)
	e.disown(cur.owner, t.ID)
	e.log.Warn("trigger taken back for a trusted worker", LogTriggerID, t.ID, LogWorkerID, cur.owner.id, LogWorkerName, cur.owner.name())
}

// FireAllowed reports whether trigger t may fire now as far as its
// owner's fire rate goes, without using up a fire: a provider that must
// do costly work before it fires (a fleet-wide claim) asks first.
func (e *Engine) FireAllowed(t Trigger) error {
	if s := t.by; s != nil && s.grant != nil && s.acct.fires.Tokens() < 1 {
		return Errorf(codes.Overloaded, "trigger %q not fired: the triggers of this connection fire at most %g times a second (--trigger-fire-rate)", t.ID, e.cfg.TriggerFireRate)
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
		return Errorf(codes.Forbidden, "trigger %q not registered: a %q trigger gets what %s gives, and this connection may not call %s (%s)", t.ID, t.Type, fn, fn, AsError(err).Message)
	}
	return nil
}

// mayTargetAll decides the function ids a trigger of session s (under a
// policy) names. A built-in type checks again when it fires, so an id no
// one serves yet passes. A type a worker provides fires by that worker's
// own calls, so its registration is the only check: an id must be one
// the connection may call or serves, or lie under its own prefix; and
// any other string of the config that names a function the connection may
// not call is refused too, whatever its field (the provider may read a
// function id from any field).
func (e *Engine) mayTargetAll(s *Session, t Trigger, ids, strs []string) error {
	e.mu.RLock()
	tt := e.triggerTypes[t.Type]
	e.mu.RUnlock()
	byWorker := tt != nil && tt.owner != nil
	prefix := s.grant.Prefix()
	for _, id := range ids {
		unknownOK := !byWorker || (prefix != "" && strings.HasPrefix(id, prefix))
		if err := e.mayTarget(s, id, unknownOK); err != nil {
			return Errorf(codes.Forbidden, "trigger %q not registered: it would call %q with this connection's rights: %s", t.ID, id, AsError(err).Message)
		}
	}
	if !byWorker {
		return nil
	}
	for _, v := range strs {
		if ValidateID("function id", v) != nil || !e.HasFunction(v) {
			continue
		}
		if err := e.mayTarget(s, v, false); err != nil {
			return Errorf(codes.Forbidden, "trigger %q not registered: its config names function %q, which this connection may not call, and a worker-provided trigger type may call it: %s", t.ID, v, AsError(err).Message)
		}
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
		return c, Errorf(codes.InvalidArgument, "call of %q: %v", c.FunctionID, err)
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
// its function_id, and every config field, at any depth, whose name ends
// in function_id (a string) or function_ids (an array of strings), which
// is how iii's and Trine's trigger types name conditions and middleware.
// Names are compared as a provider decoding them might: case, "_" and "-"
// aside (Go's encoding/json matches keys without case), so
// CONDITION_FUNCTION_ID and conditionFunctionId count too. Each id takes
// prefix. A field of another shape is invalid_argument. strs lists every
// other string value of the config, for trigger types whose provider may
// read a function id from any field.
func triggerFunctionIDs(t *Trigger, prefix string) (ids, strs []string, err error) {
	t.FunctionID = prefix + t.FunctionID
	ids = []string{t.FunctionID}
	w := configWalk{trigger: t.ID, prefix: prefix, ids: &ids, strs: &strs}
	cfg := bytes.TrimSpace(t.Config)
	if len(cfg) > 0 {
		out, changed, err := w.walk(cfg, 0)
		if err != nil {
			return nil, nil, err
		}
		if changed {
			t.Config = out
		}
	}
	for _, id := range ids {
		if err := ValidateID("function id", id); err != nil {
			return nil, nil, err
		}
	}
	return ids, strs, nil
}

// maxConfigDepth bounds how deep a trigger config is walked; deeper is
// refused (no trigger type nests that far).
const maxConfigDepth = 32

type configWalk struct {
	trigger   string
	prefix    string
	ids, strs *[]string
}

// functionIDKey reports whether config key k names one function id or a
// list of them.
func functionIDKey(k string) (one, list bool) {
	n := foldKey(strings.NewReplacer("_", "", "-", "").Replace(k))
	return strings.HasSuffix(n, "functionid"), strings.HasSuffix(n, "functionids")
}

// foldKey folds k as encoding/json matches keys (Unicode simple case
// folding, as bytes.EqualFold): every rune becomes the lower case of the
// smallest rune of its folding orbit, so "ſ" (U+017F) reads as "s" and
// the Kelvin sign as "k".
func foldKey(k string) string {
	var b strings.Builder
	for _, r := range k {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(unicode.ToLower(least))
	}
	return b.String()
}

// walk visits v, collecting function ids and strings; it returns v
// rewritten with the prefix when that changed anything.
func (w configWalk) walk(v json.RawMessage, depth int) (json.RawMessage, bool, error) {
	if depth > maxConfigDepth {
		return nil, false, Errorf(codes.InvalidArgument, "trigger %q config nests deeper than %d levels", w.trigger, maxConfigDepth)
	}
	switch v[0] {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			*w.strs = append(*w.strs, s)
		}
		return v, false, nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			return nil, false, Errorf(codes.InvalidArgument, "trigger %q config: %v", w.trigger, err)
		}
		changed := false
		for i, it := range items {
			out, c, err := w.walk(bytes.TrimSpace(it), depth+1)
			if err != nil {
				return nil, false, err
			}
			items[i], changed = out, changed || c
		}
		return w.remarshal(v, items, changed)
	case '{':
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(v, &fields); err != nil {
			return nil, false, Errorf(codes.InvalidArgument, "trigger %q config: %v", w.trigger, err)
		}
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		changed := false
		for _, k := range keys {
			out, c, err := w.field(k, bytes.TrimSpace(fields[k]), depth)
			if err != nil {
				return nil, false, err
			}
			fields[k], changed = out, changed || c
		}
		return w.remarshal(v, fields, changed)
	}
	return v, false, nil
}

// field visits the value of config key k.
func (w configWalk) field(k string, v json.RawMessage, depth int) (json.RawMessage, bool, error) {
	one, list := functionIDKey(k)
	if (!one && !list) || string(v) == "null" {
		return w.walk(v, depth+1)
	}
	if one {
		var id string
		if err := json.Unmarshal(v, &id); err != nil {
			return nil, false, Errorf(codes.InvalidArgument, "trigger %q config: %s must be a function id string", w.trigger, k)
		}
		if id == "" {
			return v, false, nil
		}
		*w.ids = append(*w.ids, w.prefix+id)
		out, _ := json.Marshal(w.prefix + id)
		return out, w.prefix != "", nil
	}
	var ids []string
	if err := json.Unmarshal(v, &ids); err != nil {
		return nil, false, Errorf(codes.InvalidArgument, "trigger %q config: %s must be an array of function id strings", w.trigger, k)
	}
	for i := range ids {
		ids[i] = w.prefix + ids[i]
	}
	*w.ids = append(*w.ids, ids...)
	out, _ := json.Marshal(ids)
	return out, w.prefix != "", nil
}

func (w configWalk) remarshal(orig json.RawMessage, v any, changed bool) (json.RawMessage, bool, error) {
	if !changed {
		return orig, false, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false, Errorf(codes.InvalidArgument, "trigger %q config: %v", w.trigger, err)
	}
	return b, true, nil
}
