package engine

import (
	"context"
	"encoding/json"
	"maps"
	"slices"

	"github.com/trinehq/trine/codes"
)

// Trigger binds an event source, a trigger type, to a function.
type Trigger struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	FunctionID string          `json:"function_id"`
	Config     json.RawMessage `json:"config,omitempty"`
	// Metadata is passed as Call.Metadata with every call the trigger
	// makes (providers do so).
	Metadata json.RawMessage `json:"metadata,omitempty"`

	// by is the session that registered the trigger, whose rights its
	// calls run with (Engine.Fire); nil for a trigger a provider was
	// handed directly.
	by *Session
}

// TriggerProvider serves a trigger type: it starts firing a trigger's
// function when the trigger is registered and stops when it is removed.
// RegisterTrigger refuses a bad config with an error; nothing is kept then.
type TriggerProvider interface {
	RegisterTrigger(ctx context.Context, t Trigger) error
	UnregisterTrigger(ctx context.Context, t Trigger) error
}

type triggerType struct {
	id          string
	description string
	provider    TriggerProvider
	owner       *Session // nil for built-in types
}

type trigger struct {
	Trigger
	owner       *Session
	provider    TriggerProvider // nil while registering, or while its type has no provider
	registering bool
}

// RegisterTriggerType registers a built-in trigger type.
func (e *Engine) RegisterTriggerType(id, description string, p TriggerProvider) error {
	if err := ValidateID("trigger type", id); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.triggerTypes[id]; ok {
		return Errorf(codes.Conflict, "trigger type %q is already registered", id)
	}
	e.triggerTypes[id] = &triggerType{id: id, description: description, provider: p}
	return nil
}

// RegisterTriggerType makes the worker the provider of trigger type id.
// Triggers of that type left without a provider are offered to it again.
func (s *Session) RegisterTriggerType(id, description string) error {
	if err := ValidateID("trigger type", id); err != nil {
		return err
	}
	if g := s.grant; g != nil {
		if err := g.canRegisterTriggerType(id); err != nil {
			return err
		}
		var err error
		if id, description, err = s.e.onTriggerTypeRegistration(context.Background(), g, id, description); err != nil {
			return err
		}
		if err := ValidateID("trigger type", id); err != nil {
			return err
		}
	}
	e := s.e
	e.mu.Lock()
	if s.isClosed() {
		e.mu.Unlock()
		return Errorf(codes.WorkerDisconnected, "session closed")
	}
	if tt, ok := e.triggerTypes[id]; ok && tt.owner != s {
		e.mu.Unlock()
		if tt.owner == nil {
			return Errorf(codes.Conflict, "trigger type %q is built into the engine", id)
		}
		return Errorf(codes.Conflict, "trigger type %q is provided by worker %s (%s)", id, tt.owner.id, tt.owner.name())
	}
	key, size := usageKey("trigger type", id), len(id)+len(description)
	if err := e.fits(s, key, size); err != nil {
		e.mu.Unlock()
		return Errorf(codes.Overloaded, "trigger type %q not registered: %s", id, err.Message)
	}
	e.charge(s, key, size)
	p := providerSession{s}
	e.triggerTypes[id] = &triggerType{id: id, description: description, provider: p, owner: s}
	s.triggerTypes[id] = struct{}{}
	var orphans []Trigger
	for _, t := range e.triggers {
		if t.Type == id && t.provider == nil && !t.registering {
			orphans = append(orphans, t.Trigger)
		}
	}
	e.mu.Unlock()
	if len(orphans) > 0 {
		e.bg.Go(func() {
			for _, t := range orphans {
				e.rebind(p, t)
			}
		})
	}
	return nil
}

// rebind offers a trigger that lost its provider to a new one.
func (e *Engine) rebind(p providerSession, t Trigger) {
	err := p.RegisterTrigger(e.hardStop, t)
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := e.triggers[t.ID]
	if cur == nil || cur.Type != t.Type || cur.provider != nil || cur.registering || err != nil {
		if err != nil {
			e.log.Warn("trigger refused by new provider", LogTriggerID, t.ID, "type", t.Type, "error", err)
		}
		return
	}
	cur.provider = p
}

// UnregisterTriggerType removes a trigger type the worker provides. Its
// triggers stay registered, waiting for a new provider.
func (s *Session) UnregisterTriggerType(id string) error {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	if _, ok := s.triggerTypes[id]; !ok {
		return Errorf(codes.TriggerTypeNotFound, "this worker does not provide trigger type %q", id)
	}
	s.e.dropTriggerType(s, id)
	return nil
}

// dropTriggerType removes a worker's trigger type. Callers hold e.mu.
func (e *Engine) dropTriggerType(s *Session, id string) {
	delete(s.triggerTypes, id)
	e.charge(s, usageKey("trigger type", id), 0)
	if tt := e.triggerTypes[id]; tt != nil && tt.owner == s {
		delete(e.triggerTypes, id)
		for _, t := range e.triggers {
			if t.Type == id {
				t.provider = nil
			}
		}
	}
}

// RegisterTrigger registers a trigger owned by the worker. The type must
// exist and its provider must accept the config; the error says why not.
// Registering an id the worker already owns replaces that trigger; an id
// owned by another worker is a conflict.
func (s *Session) RegisterTrigger(ctx context.Context, t Trigger) error {
	if err := validateTrigger(t); err != nil {
		return err
	}
	if g := s.grant; g != nil {
		var err error
		if t, err = s.triggerUnderPolicy(ctx, g, t); err != nil {
			return err
		}
	}
	t.by = s
	e := s.e
	reserved, old, tt, err := e.reserveTrigger(s, t)
	if err != nil {
		return err
	}
	if old != nil && old.provider != nil {
		if err := old.provider.UnregisterTrigger(ctx, old.Trigger); err != nil {
			e.log.Warn("provider failed to remove replaced trigger", LogTriggerID, t.ID, "error", err)
		}
	}
	err = tt.provider.RegisterTrigger(ctx, t)
	return e.settleTrigger(ctx, s, reserved, tt, err)
}

// triggerUnderPolicy checks t, a trigger of a session under policy g, and
// returns it as the policy has it: rewritten by the policy's
// on_trigger_registration function, its function ids prefixed, and every
// function it names one the session may reach.
func (s *Session) triggerUnderPolicy(ctx context.Context, g *Grant, t Trigger) (Trigger, error) {
	if err := g.canRegisterTrigger(t); err != nil {
		return t, err
	}
	t, err := s.e.onTriggerRegistration(ctx, g, t)
	if err != nil {
		return t, err
	}
	ids, strs, err := triggerFunctionIDs(&t, g.Prefix())
	if err != nil {
		return t, err
	}
	if err := validateTrigger(t); err != nil {
		return t, err
	}
	if err := s.e.canReadThrough(g, t); err != nil {
		return t, err
	}
	return t, s.e.mayTargetAll(s, t, ids, strs)
}

// reserveTrigger books t for s while its provider is asked: it returns
// the reservation, the trigger of the same id it replaces (if any) and
// the type, or why t cannot be registered.
func (e *Engine) reserveTrigger(s *Session, t Trigger) (reserved, old *trigger, tt *triggerType, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.isClosed() {
		return nil, nil, nil, Errorf(codes.WorkerDisconnected, "session closed")
	}
	old = e.triggers[t.ID]
	if old != nil && old.owner != s && s.grant == nil && old.owner.grant != nil && !old.registering {
		// A trusted worker takes back a trigger id that a connection
		// under a policy took first: that trigger goes (its provider is
		// told, as for a replaced trigger).
		e.disown(old.owner, t.ID)
		e.log.Warn("trigger id taken back for a trusted worker", LogTriggerID, t.ID, LogWorkerID, old.owner.id, LogWorkerName, old.owner.name())
		old.owner = s
	}
	if old != nil && old.owner != s {
		return nil, nil, nil, Errorf(codes.Conflict, "trigger %q is owned by another worker", t.ID)
	}
	if old == nil {
		if n := s.acct.triggers; n >= e.cfg.MaxTriggersPerWorker {
			return nil, nil, nil, Errorf(codes.Overloaded, "trigger %q not registered: this connection (with the others of its identity) owns %d triggers, the most one may (--max-triggers-per-worker)", t.ID, n)
		}
		if n := len(e.triggers); n >= e.cfg.MaxTriggers {
			return nil, nil, nil, Errorf(codes.Overloaded, "trigger %q not registered: the engine holds %d triggers, the most it may (--max-triggers)", t.ID, n)
		}
	}
	tt = e.triggerTypes[t.Type]
	if tt == nil {
		return nil, nil, nil, Errorf(codes.TriggerTypeNotFound, "trigger type %q is not registered", t.Type)
	}
	if old != nil && old.registering {
		return nil, nil, nil, Errorf(codes.Conflict, "trigger %q is still being registered", t.ID)
	}
	key, size := usageKey("trigger", t.ID), len(t.ID)+len(t.Type)+len(t.FunctionID)+len(t.Config)+len(t.Metadata)
	if err := e.fits(s, key, size); err != nil {
		return nil, nil, nil, Errorf(codes.Overloaded, "trigger %q not registered: %s", t.ID, err.Message)
	}
	reserved = &trigger{Trigger: t, owner: s, registering: true}
	e.triggers[t.ID] = reserved
	s.triggers[t.ID] = struct{}{}
	e.charge(s, key, size)
	return reserved, old, tt, nil
}

// settleTrigger ends the reservation once tt's provider answered err.
func (e *Engine) settleTrigger(ctx context.Context, s *Session, reserved *trigger, tt *triggerType, err error) error {
	t := reserved.Trigger
	e.mu.Lock()
	if e.triggers[t.ID] != reserved { // the worker left meanwhile
		e.mu.Unlock()
		// The provider took the trigger, or may still: its answer was
		// cut short when the worker left. It is told the trigger is gone.
		if err == nil || ctx.Err() != nil || AsError(err).Code == codes.DeadlineExceeded {
			e.notifyUnbound([]*trigger{{Trigger: t, provider: tt.provider}}, true)
		}
		return Errorf(codes.WorkerDisconnected, "session closed")
	}
	if err != nil {
		delete(e.triggers, t.ID)
		e.disown(s, t.ID)
		e.mu.Unlock()
		ae := AsError(err)
		if ae.Code == codes.Internal || ae.Code == codes.HandlerError {
			ae = &Error{Code: codes.InvalidArgument, Message: ae.Message}
		}
		return Errorf(ae.Code, "trigger %q refused by %q provider: %s", t.ID, t.Type, ae.Message)
	}
	reserved.registering = false
	if cur := e.triggerTypes[t.Type]; cur != tt {
		// The provider left while it answered: the trigger waits for
		// the next one, and goes to it at once if it came meanwhile.
		e.mu.Unlock()
		if p, ok := cur.providerSession(); ok {
			e.bg.Go(func() { e.rebind(p, t) })
		}
		return nil
	}
	reserved.provider = tt.provider
	e.mu.Unlock()
	return nil
}

// providerSession is the worker that provides tt, if one does.
func (tt *triggerType) providerSession() (providerSession, bool) {
	if tt == nil {
		return providerSession{}, false
	}
	p, ok := tt.provider.(providerSession)
	return p, ok
}

func validateTrigger(t Trigger) error {
	if err := ValidateID("trigger id", t.ID); err != nil {
		return err
	}
	if err := ValidateID("trigger type", t.Type); err != nil {
		return err
	}
	if err := ValidateID("function id", t.FunctionID); err != nil {
		return err
	}
	if len(t.Config) > 0 && !json.Valid(t.Config) {
		return Errorf(codes.InvalidArgument, "trigger %q config is not valid JSON", t.ID)
	}
	if len(t.Metadata) > 0 && !json.Valid(t.Metadata) {
		return Errorf(codes.InvalidArgument, "trigger %q metadata is not valid JSON", t.ID)
	}
	return nil
}

// UnregisterTrigger removes a trigger. Only the worker that registered it
// may; for anyone else it is forbidden.
func (s *Session) UnregisterTrigger(ctx context.Context, id string) error {
	e := s.e
	e.mu.Lock()
	t := e.triggers[id]
	switch {
	case t == nil:
		e.mu.Unlock()
		return Errorf(codes.TriggerNotFound, "trigger %q is not registered", id)
	case t.owner != s:
		e.mu.Unlock()
		return Errorf(codes.Forbidden, "trigger %q belongs to another worker", id)
	}
	delete(e.triggers, id)
	e.disown(s, id)
	e.mu.Unlock()
	if t.provider != nil {
		if err := t.provider.UnregisterTrigger(ctx, t.Trigger); err != nil {
			e.log.Warn("provider failed to remove trigger", LogTriggerID, id, "error", err)
		}
	}
	return nil
}

// ReadGuard is a TriggerProvider whose triggers hand their function data
// that a caller could otherwise get only by calling a function (state
// changes, which state::get reads), or that decide for others (stream:join).
// ReadFunction names that function for t, or "": a connection under a
// listener policy may register t only if it may call it.
type ReadGuard interface {
	ReadFunction(t Trigger) string
}

// OrphanKeeper is a TriggerProvider that tells a trigger whose owner
// disconnected from one that was unregistered: for the former the engine
// calls TriggerOrphaned instead of UnregisterTrigger. A provider whose
// triggers guard something (stream:join) keeps guarding while the owner is
// away, until a trigger of the same id is registered again or the
// provider's own rules release it.
type OrphanKeeper interface {
	TriggerOrphaned(ctx context.Context, t Trigger) error
}

// notifyUnbound tells providers that triggers are gone: unregistered,
// or orphaned when their owner disconnected. A worker provider is sent
// its unregistertrigger before notifyUnbound returns, so that nothing
// registered later overtakes it; its answer, and built-in providers, are
// awaited in the background.
func (e *Engine) notifyUnbound(ts []*trigger, orphaned bool) {
	if len(ts) == 0 {
		return
	}
	var builtin []*trigger
	var sent []func() error
	for _, t := range ts {
		p, ok := t.provider.(providerSession)
		if !ok {
			builtin = append(builtin, t)
			continue
		}
		wait, err := p.s.send(e.hardStop, t.Trigger, true)
		if err != nil {
			e.log.Debug("provider failed to remove trigger", LogTriggerID, t.ID, "error", err)
			continue
		}
		sent = append(sent, wait)
	}
	e.bg.Go(func() {
		for _, wait := range sent {
			if err := wait(); err != nil {
				e.log.Debug("provider failed to remove trigger", "error", err)
			}
		}
		for _, t := range builtin {
			if k, ok := t.provider.(OrphanKeeper); ok && orphaned {
				if err := k.TriggerOrphaned(e.hardStop, t.Trigger); err != nil {
					e.log.Debug("provider failed to keep orphaned trigger", LogTriggerID, t.ID, "error", err)
				}
				continue
			}
			if err := t.provider.UnregisterTrigger(e.hardStop, t.Trigger); err != nil {
				e.log.Debug("provider failed to remove trigger", LogTriggerID, t.ID, "error", err)
			}
		}
	})
}

// providerSession serves a trigger type through the worker that provides it.
type providerSession struct{ s *Session }

func (p providerSession) RegisterTrigger(ctx context.Context, t Trigger) error {
	return p.s.configure(ctx, t, false)
}

func (p providerSession) UnregisterTrigger(ctx context.Context, t Trigger) error {
	return p.s.configure(ctx, t, true)
}

func (s *Session) configure(ctx context.Context, t Trigger, remove bool) error {
	wait, err := s.send(ctx, t, remove)
	if err != nil {
		return err
	}
	return wait()
}

// send hands a trigger's config to the provider's connection; wait
// returns its answer, within ProviderTimeout.
func (s *Session) send(ctx context.Context, t Trigger, remove bool) (wait func() error, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.e.cfg.ProviderTimeout)
	reqID := s.e.newID()
	ch, err := s.await(reqID)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := s.peer.ConfigureTrigger(ctx, reqID, t, remove); err != nil {
		cancel()
		s.forget(reqID)
		return nil, AsError(err)
	}
	return func() error {
		defer cancel()
		select {
		case r := <-ch:
			return r.err
		case <-ctx.Done():
			s.forget(reqID)
			return Errorf(codes.DeadlineExceeded, "provider %s (%s) did not answer for trigger %q", s.id, s.name(), t.ID)
		}
	}, nil
}

// TriggerTypeStatus is one trigger type in engine::triggers::overview.
type TriggerTypeStatus struct {
	ID           string `json:"id"`
	Description  string `json:"description,omitempty"`
	ProviderID   string `json:"provider_worker_id,omitempty"`
	ProviderName string `json:"provider_worker_name,omitempty"`
	// ProviderNamespace is the provider worker's namespace ("default"
	// for built-in types).
	ProviderNamespace string `json:"provider_namespace,omitempty"`
	BuiltIn           bool   `json:"builtin"`
	TriggerCount      int    `json:"trigger_count"`
}

// TriggerStatus is one trigger in engine::triggers::overview. Status is
// "active", "registering", "waiting_for_provider" when its type's
// provider has left, or "orphaned" (see Orphan; Reason says why).
type TriggerStatus struct {
	Trigger
	OwnerID   string `json:"owner_worker_id"`
	OwnerName string `json:"owner_worker_name"`
	Status    string `json:"status"`
	Reason    string `json:"reason,omitempty"`
}

// liveTriggers lists trigger types and the triggers of connected workers,
// sorted by id.
func (e *Engine) liveTriggers() ([]TriggerTypeStatus, []TriggerStatus) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	counts := make(map[string]int)
	ts := make([]TriggerStatus, 0, len(e.triggers))
	for _, id := range slices.Sorted(maps.Keys(e.triggers)) {
		t := e.triggers[id]
		counts[t.Type]++
		st := TriggerStatus{Trigger: t.Trigger, OwnerID: t.owner.id, OwnerName: t.owner.name(), Status: "active"}
		switch {
		case t.registering:
			st.Status = "registering"
		case t.provider == nil:
			st.Status = "waiting_for_provider"
		}
		ts = append(ts, st)
	}
	types := make([]TriggerTypeStatus, 0, len(e.triggerTypes))
	for _, id := range slices.Sorted(maps.Keys(e.triggerTypes)) {
		tt := e.triggerTypes[id]
		st := TriggerTypeStatus{ID: id, Description: tt.description, BuiltIn: tt.owner == nil, TriggerCount: counts[id]}
		if tt.owner != nil {
			st.ProviderID, st.ProviderName, st.ProviderNamespace = tt.owner.id, tt.owner.name(), tt.owner.Info().Namespace
		}
		types = append(types, st)
	}
	return types, ts
}

// disown takes trigger id off session s's books: its triggers and what
// the registration held. Callers hold e.mu and update e.triggers.
func (e *Engine) disown(s *Session, id string) {
	delete(s.triggers, id)
	e.charge(s, usageKey("trigger", id), 0)
}
